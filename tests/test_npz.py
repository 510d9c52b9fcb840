"""mpjax.npz: atomic writes, and reads that refuse anything but plain arrays (never pickles)."""

import numpy as np
import pytest

from mpjax import npz


def test_round_trip_and_nested_dicts(tmp_path):
    arrays = {"a/b/kernel": np.arange(6.0).reshape(2, 3), "c": np.array([1, 2], np.int32)}
    npz.write_npz(tmp_path / "x.npz", arrays)
    got = npz.read_npz(tmp_path / "x.npz")
    assert set(got) == set(arrays)
    for k, v in arrays.items():
        np.testing.assert_array_equal(got[k], v)
    assert npz.unflatten_dict(got)["a"]["b"]["kernel"].shape == (2, 3)


def _random_bytes(path, rng):
    path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(_random_bytes, id="random-bytes"),
        pytest.param(lambda p, rng: p.write_bytes(b""), id="empty"),
        pytest.param(lambda p, rng: np.save(open(p, "wb"), np.ones(3)), id="bare-npy"),
        pytest.param(
            lambda p, rng: np.savez(p, obj=np.array([{"a": 1}], dtype=object)), id="object-array"
        ),
        pytest.param(lambda p, rng: p.write_bytes(b"PK\x03\x04" + b"\0" * 40), id="broken-zip"),
    ],
)
def test_bad_files_name_the_path_and_never_suggest_pickle(tmp_path, rng, make):
    path = tmp_path / "bad.npz"
    make(path, rng)
    with pytest.raises(ValueError, match=r"bad\.npz: cannot read a parameter file") as err:
        npz.read_npz(path, what="a parameter file")
    message = str(err.value)
    assert "pickle" not in message.lower() and "\n" not in message, message


def test_random_bytes_seeded_many(tmp_path):
    """Whatever the random bytes, the message holds no pickle advice."""
    for seed in range(20):
        _random_bytes(tmp_path / "r.npz", np.random.default_rng(seed))
        with pytest.raises(ValueError) as err:
            npz.read_npz(tmp_path / "r.npz")
        assert "pickle" not in str(err.value).lower()


def test_missing_file_and_object_arrays_on_write(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.npz: cannot read an \.npz file"):
        npz.read_npz(tmp_path / "nope.npz")
    with pytest.raises(ValueError, match="dtype=object"):
        npz.write_npz(tmp_path / "o.npz", {"o": np.array([None, 1], dtype=object)})
    assert not (tmp_path / "o.npz").exists()
