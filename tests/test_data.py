"""Tests for mpjax.data: IDX reading, dataset lookup, batches, augmentations."""

import gzip
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import data


def _write_dataset(root: Path, rng: np.random.Generator, n: int = 20, gz: bool = True) -> tuple:
    ext = ".gz" if gz else ""
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        data.write_idx(root / f"{prefix}-images-idx3-ubyte{ext}", images)
        data.write_idx(root / f"{prefix}-labels-idx1-ubyte{ext}", labels)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, rng, gz, dtype):
    a = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = tmp_path / ("a.idx" + (".gz" if gz else ""))
    data.write_idx(path, a)
    b = data.read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.shape == a.shape
    np.testing.assert_array_equal(a, b)


def test_idx_header_bytes(tmp_path):
    data.write_idx(tmp_path / "l", np.arange(3, dtype=np.uint8))
    raw = (tmp_path / "l").read_bytes()
    assert raw == bytes([0, 0, 8, 1, 0, 0, 0, 3, 0, 1, 2])


def test_truncated_and_foreign_files(tmp_path, rng):
    data.write_idx(tmp_path / "x", rng.integers(0, 255, (4, 28, 28), dtype=np.uint8))
    raw = (tmp_path / "x").read_bytes()
    (tmp_path / "trunc").write_bytes(raw[:-10])
    with pytest.raises(ValueError, match="trunc.*truncated"):
        data.read_idx(tmp_path / "trunc")
    (tmp_path / "trunc.gz").write_bytes(gzip.compress(raw)[:-20])
    with pytest.raises(ValueError, match=r"trunc\.gz"):
        data.read_idx(tmp_path / "trunc.gz")
    (tmp_path / "foreign").write_bytes(b"PK\x03\x04hello")
    with pytest.raises(ValueError, match="foreign: not an IDX file"):
        data.read_idx(tmp_path / "foreign")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ValueError, match="not an IDX"):
        data.read_idx(tmp_path / "empty")


@pytest.mark.parametrize("gz", [True, False])
def test_load_with_data_dir_and_env(tmp_path, rng, monkeypatch, gz):
    images, labels = _write_dataset(tmp_path / "fashion-mnist", rng, gz=gz)
    x, y = data.load_fashion_mnist("test", data_dir=tmp_path / "fashion-mnist")
    assert x.dtype == np.uint8 and y.dtype == np.int32 and x.shape == (20, 28, 28)
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))  # parent dir with a fashion-mnist/ sub-dir
    x2, _ = data.load_idx_dataset("fashion-mnist", "train")
    np.testing.assert_array_equal(x2, images)


def test_missing_dataset_error(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    monkeypatch.setitem(data.DATASETS, "mnist", ("no-such-package-xyz", str(tmp_path / "nope")))
    with pytest.raises(ValueError, match="apt-get install no-such-package-xyz.*MPJAX_DATA_DIR"):
        data.load_mnist("train")
    with pytest.raises(ValueError, match="data_dir"):
        data.load_fashion_mnist("train", data_dir=tmp_path)
    with pytest.raises(ValueError, match="split"):
        data.load_fashion_mnist("val", data_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load_idx_dataset("cifar", "train")


def test_real_fashion_mnist_smoke(monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    try:
        data.find_data_dir("fashion-mnist")
    except ValueError:
        pytest.skip("dataset-fashion-mnist is not installed")
    x, y = data.load_fashion_mnist("test")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and set(np.unique(y)) == set(range(10))
    assert abs(data.normalize(x).mean() - data.STATS["fashion-mnist"][0]) < 0.01


def test_batches_deterministic_and_resumable(rng):
    x = np.arange(103)[:, None] * np.ones((1, 2), np.int64)
    y = np.arange(103)
    a = list(data.batches(x, y, 10, seed=1, epoch=2))
    b = list(data.batches(x, y, 10, seed=1, epoch=2))
    assert len(a) == 10 and all(len(bx) == 10 for bx, _ in a)
    for (ax, ay), (bx, _by) in zip(a, b, strict=True):
        np.testing.assert_array_equal(ax, bx)
        np.testing.assert_array_equal(ax[:, 0], ay)
    resumed = list(data.batches(x, y, 10, seed=1, epoch=2, start_batch=7))
    assert len(resumed) == 3
    for (ax, _), (rx, _) in zip(a[7:], resumed, strict=True):
        np.testing.assert_array_equal(ax, rx)
    other = next(data.batches(x, y, 10, seed=1, epoch=3))[1]
    assert not np.array_equal(other, a[0][1])
    full = list(data.batches(x, y, 10, seed=1, epoch=2, drop_remainder=False))
    assert len(full) == 11 and len(full[-1][1]) == 3
    assert sorted(np.concatenate([b[1] for b in full]).tolist()) == list(range(103))


def test_normalize(rng):
    x = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    u = data.normalize(x)
    assert u.dtype == np.float32 and u.min() >= 0 and u.max() <= 1
    s = data.normalize(x, "standard")
    assert abs(float(s.mean())) < 1e-4 and abs(float(s.std()) - 1) < 1e-3
    j = data.normalize(jnp.asarray(x), "standard", *data.STATS["fashion-mnist"])
    assert isinstance(j, jax.Array)
    with pytest.raises(ValueError, match="mode"):
        data.normalize(x, "minmax")


def test_augmentations(key):
    x = jnp.arange(2 * 6 * 6, dtype=jnp.float32).reshape(2, 6, 6) + 1
    crop = jax.jit(data.random_crop, static_argnums=2)
    out = crop(key, x, 2)
    assert out.shape == x.shape
    # every crop is a window of the zero-padded image at an offset in [0, 2 * padding]
    for i in range(2):
        padded = np.pad(np.asarray(x[i]), 2)
        windows = [padded[a : a + 6, b : b + 6] for a in range(5) for b in range(5)]
        assert any(np.array_equal(np.asarray(out[i]), w) for w in windows), i
    np.testing.assert_array_equal(data.random_crop(key, x, 0), x)
    flipped = data.random_flip(key, x, p=1.0)
    np.testing.assert_array_equal(flipped, x[:, :, ::-1])
    np.testing.assert_array_equal(data.random_flip(key, x, p=0.0), x)
    nhwc = data.augment(key, jnp.ones((3, 8, 8, 3)))
    assert nhwc.shape == (3, 8, 8, 3)
    many = data.random_crop(key, jnp.ones((64, 6, 6)), 2)
    assert float(many.sum()) < 64 * 36  # some crops hit the zero padding


def test_image_folder(tmp_path, rng):
    pil = pytest.importorskip("PIL.Image")
    for cls in ("b_cat", "a_dog"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            arr = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
            pil.fromarray(arr).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "a_dog" / "README").write_text("not an image")
    x, y, names = data.load_image_folder(tmp_path, 8)
    assert x.shape == (4, 8, 8, 3) and x.dtype == np.uint8
    assert names == ["a_dog", "b_cat"] and y.tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="class sub-directories"):
        data.load_image_folder(tmp_path / "a_dog", 8)


def test_tfds_clear_error():
    try:
        import tensorflow_datasets  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="tensorflow_datasets"):
            data.load_tfds("mnist")
    else:
        pytest.skip("tensorflow_datasets is installed")
