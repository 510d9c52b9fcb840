"""Datasets: IDX files (Fashion-MNIST, MNIST), deterministic batches, augmentations.

Fashion-MNIST is read from where the Debian package ``dataset-fashion-mnist`` installs it
(``/usr/share/datasets/fashion-mnist``). The directory is looked up in this order:

1. the ``data_dir`` argument (a CLI's ``--data-dir``),
2. the environment variable ``MPJAX_DATA_DIR``,
3. the package's default directory,
4. the directory that ``dpkg -L <package>`` lists (asked once, then cached).

``data_dir`` and ``MPJAX_DATA_DIR`` may hold the IDX files themselves or a sub-directory
named after the dataset (``fashion-mnist/``, ``mnist/``). Files may be gzipped or raw:
``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``.

Batches are numpy arrays; the order of an epoch is a permutation drawn from
``(seed, epoch)`` alone, so a run can resume at any batch (``start_batch``). The
augmentations (:func:`random_crop`, :func:`random_flip`) are pure jax functions of a key.
Image folders (PIL) and TFDS are adapters used only when a caller points at them.

Loading logs its progress at INFO level on the ``mpjax.data`` logger (what is read from
where, how long it took; an image folder every few seconds), which ``mpjax prune`` shows.
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

#: Environment variable that overrides the data directory.
ENV_VAR = "MPJAX_DATA_DIR"

#: ``name -> (Debian package, default directory)``.
DATASETS: dict[str, tuple[str, str]] = {
    "fashion-mnist": ("dataset-fashion-mnist", "/usr/share/datasets/fashion-mnist"),
    "mnist": ("dataset-mnist", "/usr/share/datasets/mnist"),
}

#: Training-set pixel mean and standard deviation on the [0, 1] scale.
STATS: dict[str, tuple[float, float]] = {
    "fashion-mnist": (0.2860, 0.3530),
    "mnist": (0.1307, 0.3081),
}

_SPLIT_PREFIX = {"train": "train", "test": "t10k"}
# IDX type codes (third byte of the magic number) -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
#: Seconds between two progress lines of :func:`load_image_folder`.
LOG_INTERVAL = 5.0
_log = logging.getLogger(__name__)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped or raw) into a numpy array in native byte order.

    The IDX format: magic ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32 dims,
    then the data in C order.

    Raises:
      ValueError: naming the file, if it is not IDX, has an unknown type code, or is
        shorter than its header says (truncated download).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if raw[:2] == _GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: cannot read IDX file ({e}); re-download or reinstall it.") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise ValueError(
            f"{path}: not an IDX file (magic number {raw[:4].hex() or 'missing'}); expected "
            "00 00 <type> <ndim> as in the MNIST / Fashion-MNIST distribution files."
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} of {header} bytes).")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    need = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != need:
        what = "truncated" if len(raw) < need else "has trailing bytes"
        raise ValueError(
            f"{path}: IDX file {what}: {len(raw)} bytes, header shape {shape} needs {need}; "
            "re-download or reinstall it."
        )
    data = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file; gzipped when ``path`` ends in ``.gz``."""
    array = np.asarray(array)
    code = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}.get(
        array.dtype.newbyteorder("=")
    )
    if code is None or array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"array: dtype {array.dtype} / ndim {array.ndim} not storable as IDX.")
    payload = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload += array.astype(_IDX_DTYPES[code]).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)


@functools.cache
def _dpkg_dir(package: str) -> str | None:
    """The directory holding ``package``'s ``*-ubyte*`` files per ``dpkg -L`` (cached)."""
    if shutil.which("dpkg") is None:
        return None
    try:
        out = subprocess.run(
            ["dpkg", "-L", package], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if "-ubyte" in line:
            return str(Path(line.strip()).parent)
    return None


def _idx_file(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _has_files(directory: Path) -> bool:
    return _idx_file(directory, "train-images-idx3-ubyte") is not None or (
        _idx_file(directory, "t10k-images-idx3-ubyte") is not None
    )


def find_data_dir(name: str = "fashion-mnist", data_dir: str | os.PathLike | None = None) -> Path:
    """The directory holding dataset ``name``'s IDX files (lookup order in the module doc).

    Raises:
      ValueError: for an unknown ``name``, or when no candidate directory has the files
        (the message lists where it looked and how to install the data).
    """
    if name not in DATASETS:
        raise ValueError(f"name: unknown dataset {name!r}; expected one of {sorted(DATASETS)}.")
    package, default = DATASETS[name]
    tried: list[str] = []
    for base in (data_dir, os.environ.get(ENV_VAR) or None):
        if base is None:
            continue
        for cand in (Path(base), Path(base) / name):
            tried.append(str(cand))
            if _has_files(cand):
                return cand
        if base is data_dir:  # an explicit argument must not silently fall back
            raise ValueError(f"data_dir: no {name} IDX files in {tried}.")
    for cand in (default, _dpkg_dir(package)):
        if cand is None:
            continue
        tried.append(cand)
        if _has_files(Path(cand)):
            return Path(cand)
    raise ValueError(
        f"{name} not found (looked in {tried}). Install it with `sudo apt-get install "
        f"{package}` or `make data`, or set {ENV_VAR} / pass data_dir= to a directory holding "
        "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]."
    )


def load_idx_dataset(
    name: str, split: str = "train", data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of an IDX dataset split.

    Args:
      name: ``"fashion-mnist"`` or ``"mnist"``.
      split: ``"train"`` or ``"test"``.
      data_dir: directory override (see :func:`find_data_dir`).

    Returns:
      ``(images uint8 [N, 28, 28], labels int32 [N])``.
    """
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}.")
    directory = find_data_dir(name, data_dir)
    started = time.perf_counter()
    _log.info("data: reading the %s split of %s from %s", split, name, directory)
    prefix = _SPLIT_PREFIX[split]
    paths = [_idx_file(directory, f"{prefix}-{k}-ubyte") for k in ("images-idx3", "labels-idx1")]
    if None in paths:
        raise ValueError(f"{directory}: the {split} split of {name} is incomplete.")
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{directory}: {split} images {images.shape} and labels {labels.shape} do not match."
        )
    _log.info("data: %d %s images in %.1f s", len(images), split, time.perf_counter() - started)
    return images.astype(np.uint8), labels.astype(np.int32)


def load_fashion_mnist(
    split: str = "train", data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST: ``(uint8 images [N, 28, 28], int32 labels [N])``; N = 60000 / 10000."""
    return load_idx_dataset("fashion-mnist", split, data_dir)


def load_mnist(
    split: str = "train", data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST in IDX format: ``(uint8 images [N, 28, 28], int32 labels [N])``."""
    return load_idx_dataset("mnist", split, data_dir)


def num_batches(n: int, batch_size: int, drop_remainder: bool = True) -> int:
    """Number of batches in an epoch of ``n`` examples."""
    return n // batch_size if drop_remainder else -(-n // batch_size)


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The example order of ``epoch``: a permutation of ``range(n)`` from ``(seed, epoch)``."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def batches(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seed: int = 0,
    epoch: int = 0,
    drop_remainder: bool = True,
    start_batch: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled ``(images, labels)`` batches of one epoch, deterministic and resumable.

    Batch ``b`` of ``epoch`` depends only on ``(seed, epoch, b)``; starting at
    ``start_batch=b`` yields exactly the batches a full pass yields from ``b`` on.
    """
    if len(images) != len(labels):
        raise ValueError(f"labels: {len(labels)} labels for {len(images)} images.")
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}.")
    perm = epoch_permutation(len(images), seed, epoch)
    for b in range(start_batch, num_batches(len(images), batch_size, drop_remainder)):
        idx = perm[b * batch_size : (b + 1) * batch_size]
        yield images[idx], labels[idx]


def normalize(
    images: np.ndarray | jax.Array,
    mode: str = "unit",
    mean: float | None = None,
    std: float | None = None,
) -> np.ndarray | jax.Array:
    """uint8 pixels as float32: ``x / 255`` (``"unit"``) or ``(x / 255 - mean) / std``.

    For ``"standard"`` pass the training-set ``mean``/``std`` (see :data:`STATS`); when
    omitted they are computed from ``images`` themselves.
    """
    xp = jnp if isinstance(images, jax.Array) else np
    x = xp.asarray(images, dtype=xp.float32) / 255.0
    if mode == "unit":
        return x
    if mode != "standard":
        raise ValueError(f"mode: expected 'unit' or 'standard', got {mode!r}.")
    mean = float(x.mean()) if mean is None else mean
    std = float(x.std()) if std is None else std
    return (x - mean) / max(std, 1e-12)


def _as_nhwc(images: jax.Array) -> tuple[jax.Array, bool]:
    if images.ndim == 3:
        return images[..., None], True
    if images.ndim == 4:
        return images, False
    raise ValueError(f"images: expected [B, H, W] or [B, H, W, C], got shape {images.shape}.")


def random_crop(key: jax.Array, images: jax.Array, padding: int = 4) -> jax.Array:
    """Zero-pad each image by ``padding`` pixels and crop back at a random offset (jittable)."""
    x, squeeze = _as_nhwc(jnp.asarray(images))
    b, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(key, (b, 2), 0, 2 * padding + 1)

    def crop(img, off):
        return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, c))

    out = jax.vmap(crop)(padded, offsets)
    return out[..., 0] if squeeze else out


def random_flip(key: jax.Array, images: jax.Array, p: float = 0.5) -> jax.Array:
    """Flip each image left-right with probability ``p`` (jittable)."""
    x, squeeze = _as_nhwc(jnp.asarray(images))
    flip = jax.random.bernoulli(key, p, (x.shape[0], 1, 1, 1))
    out = jnp.where(flip, x[:, :, ::-1, :], x)
    return out[..., 0] if squeeze else out


def augment(key: jax.Array, images: jax.Array, padding: int = 4, flip: bool = True) -> jax.Array:
    """Random crop with ``padding`` then (optionally) a random horizontal flip."""
    k1, k2 = jax.random.split(key)
    x = random_crop(k1, images, padding) if padding > 0 else jnp.asarray(images)
    return random_flip(k2, x) if flip else x


def load_image_folder(
    root: str | os.PathLike, image_size: int, channels: int = 3
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images under ``root/<class_name>/*`` resized to ``image_size`` (needs Pillow).

    Returns:
      ``(uint8 images [N, S, S, C], int32 labels [N], class_names)``; classes sorted by name.
    """
    try:
        from PIL import Image
    except ImportError as e:
        raise ValueError("load_image_folder needs Pillow: `pip install pillow`.") from e
    root = Path(root)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    if not classes:
        raise ValueError(
            f"root: {root} has no class sub-directories (expected root/<class>/*.png)."
        )
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise ValueError(f"channels: expected 1 or 3, got {channels}.")
    images, labels = [], []
    last = time.perf_counter()
    for label, cls in enumerate(classes):
        if time.perf_counter() - last >= LOG_INTERVAL:
            _log.info("data: class %d/%d (%s), %d images so far", label + 1, len(classes), cls,
                      len(images))  # fmt: skip
            last = time.perf_counter()
        for f in sorted((root / cls).iterdir()):
            try:
                with Image.open(f) as img:
                    img = img.convert(mode).resize((image_size, image_size), Image.BILINEAR)
                    images.append(np.asarray(img, np.uint8).reshape(image_size, image_size, -1))
            except OSError:
                continue  # not an image (README, hidden file ...)
            labels.append(label)
    if not images:
        raise ValueError(f"root: no readable images under {root}.")
    return np.stack(images), np.asarray(labels, np.int32), classes


def load_tfds(
    name: str, split: str = "train", data_dir: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A TFDS dataset already prepared in ``data_dir`` as numpy ``(images, labels)``.

    Needs ``tensorflow_datasets``; nothing is downloaded (``download=False``).
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ValueError(
            "load_tfds needs tensorflow_datasets: `pip install tensorflow-datasets`, or use "
            "load_image_folder / load_idx_dataset instead."
        ) from e
    ds = tfds.load(name, split=split, data_dir=data_dir, batch_size=-1, download=False)
    ds = tfds.as_numpy(ds)
    return np.asarray(ds["image"]), np.asarray(ds["label"], np.int32)
