"""Tests for mpjax.lazy: leaves read one at a time from npz, safetensors (sharded) and orbax."""

import json

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from mpjax import checkpoint, lazy, tree

SHAPES = {"tall": (96, 32), "wide": (32, 96), "square": (48, 48)}


def arrays(rng, prefix="m", dtype=np.float32):
    """One tall, one wide and one square matrix plus a bias, in ``dtype``."""
    out = {f"{prefix}.{k}.weight": rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
    out[f"{prefix}.bias"] = rng.standard_normal(7).astype(dtype)
    return out


def test_npz_headers_and_leaves_match_numpy(rng, tmp_path):
    data = {f"blk/{k}/kernel": rng.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
    data["blk/step"] = np.arange(3, dtype=np.int64)
    np.savez(tmp_path / "p.npz", **data)
    t = lazy.open_npz(tmp_path / "p.npz")
    assert sorted(t.paths) == sorted(data)
    for path, value in data.items():
        assert t.shape(path) == value.shape and t.stored_dtype(path) == value.dtype
    got = t.load(["blk/wide/kernel"])
    assert list(got) == ["blk/wide/kernel"]
    np.testing.assert_array_equal(got["blk/wide/kernel"], data["blk/wide/kernel"])
    whole = tree.flatten(t.materialize())
    assert all(np.array_equal(whole[p], data[p]) for p in data)
    assert t.nbytes() == sum(v.nbytes for v in data.values())


def test_bad_npz_is_refused_naming_the_file(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="x.npz"):
        lazy.open_npz(tmp_path / "x.npz")
    np.savez(tmp_path / "o.npz", a=np.array([{"k": 1}], dtype=object))
    with pytest.raises(ValueError, match="objects"):
        lazy.open_npz(tmp_path / "o.npz")


@pytest.mark.parametrize("half", [ml_dtypes.bfloat16, np.float16])
def test_half_precision_safetensors_widen_to_float32(rng, tmp_path, half):
    data = arrays(rng, dtype=half)
    save_file(data, str(tmp_path / "m.safetensors"))
    t = lazy.open_safetensors(tmp_path / "m.safetensors")
    assert sorted(t.paths) == sorted(data) and not t.nested
    assert all(t.stored_dtype(p) == np.dtype(half) for p in t.paths)
    oracle = load_file(str(tmp_path / "m.safetensors"))  # the library's own reader
    for path, value in t.load(t.paths).items():
        assert value.dtype == np.float32 and value.shape == data[path].shape
        np.testing.assert_array_equal(value, oracle[path].astype(np.float32))
    assert t.nbytes() == sum(v.nbytes for v in data.values())


def test_float64_and_ints_keep_their_dtype(rng, tmp_path):
    data = {"w.weight": rng.standard_normal((5, 3)), "n": np.arange(4, dtype=np.int32)}
    save_file(data, str(tmp_path / "m.safetensors"))
    got = lazy.open_safetensors(tmp_path / "m.safetensors").load(["w.weight", "n"])
    assert got["w.weight"].dtype == np.float64 and got["n"].dtype == np.int32
    np.testing.assert_array_equal(got["w.weight"], data["w.weight"])


def test_read_maps_no_file_page(rng, tmp_path):
    save_file(arrays(rng), str(tmp_path / "m.safetensors"))
    t = lazy.open_safetensors(tmp_path / "m.safetensors")
    t.load(t.paths)
    with open("/proc/self/maps") as fh:
        assert "m.safetensors" not in fh.read()


def write_sharded(rng, folder, dtype=ml_dtypes.bfloat16):
    """Two shards and their index; returns every tensor."""
    a, b = arrays(rng, "layers.0", dtype), arrays(rng, "layers.1", dtype)
    save_file(a, str(folder / "model-00001-of-00002.safetensors"))
    save_file(b, str(folder / "model-00002-of-00002.safetensors"))
    weight_map = {**dict.fromkeys(a, "model-00001-of-00002.safetensors"),
                  **dict.fromkeys(b, "model-00002-of-00002.safetensors")}  # fmt: skip
    (folder / lazy.INDEX_NAME).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return {**a, **b}


def test_sharded_checkpoint_by_index_or_folder(rng, tmp_path):
    data = write_sharded(rng, tmp_path)
    for where in (tmp_path, tmp_path / lazy.INDEX_NAME):
        t = lazy.open_safetensors(where)
        assert sorted(t.paths) == sorted(data)
        whole = t.materialize()
        for name, value in data.items():
            np.testing.assert_array_equal(whole[name], value.astype(np.float32))


def test_missing_shard_names_the_file(rng, tmp_path):
    write_sharded(rng, tmp_path)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(ValueError, match="shard file 'model-00002-of-00002.safetensors' is miss"):
        lazy.open_safetensors(tmp_path)


def test_index_naming_an_absent_tensor_names_it(rng, tmp_path):
    write_sharded(rng, tmp_path)
    index = json.loads((tmp_path / lazy.INDEX_NAME).read_text())
    index["weight_map"]["layers.9.ghost.weight"] = "model-00001-of-00002.safetensors"
    (tmp_path / lazy.INDEX_NAME).write_text(json.dumps(index))
    with pytest.raises(ValueError, match="'layers.9.ghost.weight'.*does not hold it"):
        lazy.open_safetensors(tmp_path)
    (tmp_path / lazy.INDEX_NAME).write_text("{}")
    with pytest.raises(ValueError, match="weight_map"):
        lazy.open_safetensors(tmp_path)


def test_truncated_or_garbled_safetensors_is_refused(rng, tmp_path):
    save_file(arrays(rng), str(tmp_path / "m.safetensors"))
    raw = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[:-100])
    with pytest.raises(ValueError, match="cut.safetensors.*truncated"):
        lazy.open_safetensors(tmp_path / "cut.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="junk.safetensors: not a readable"):
        lazy.open_safetensors(tmp_path / "junk.safetensors")


def test_orbax_partial_restore_matches_the_whole_restore(rng, tmp_path):
    params = {
        "Dense_0": {"kernel": rng.standard_normal((8, 24)).astype(np.float32)},
        "Dense_1": {"kernel": rng.standard_normal((24, 8)).astype(np.float32),
                    "bias": np.zeros(8, np.float32)},
    }  # fmt: skip
    checkpoint.save_params(tmp_path / "ck", params)
    t = lazy.open_orbax(tmp_path / "ck")
    whole = tree.flatten(checkpoint.restore_params(tmp_path / "ck")[0])
    assert sorted(t.paths) == sorted(whole)
    got = t.load(["Dense_1/kernel"])
    assert list(got) == ["Dense_1/kernel"] and isinstance(got["Dense_1/kernel"], np.ndarray)
    np.testing.assert_array_equal(got["Dense_1/kernel"], np.asarray(whole["Dense_1/kernel"]))
    with pytest.raises(ValueError, match="format"):
        (tmp_path / "other" / "meta").mkdir(parents=True)
        (tmp_path / "other" / "meta" / "metadata").write_text('{"format": "x"}')
        lazy.open_orbax(tmp_path / "other")


def test_unknown_path_is_a_key_error_naming_it(rng, tmp_path):
    np.savez(tmp_path / "p.npz", a=np.ones(2))
    with pytest.raises(KeyError, match="nope"):
        lazy.open_npz(tmp_path / "p.npz").load(["nope"])
