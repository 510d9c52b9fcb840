"""Flat array files: ``.npz`` read and written in one place, atomically and without pickles.

Every ``.npz`` mpjax reads or writes goes through this module: big_vision-style parameter
files (keys ``"a/b/kernel"``), the shipped model, and the dynamics study's per-epoch
records. Writes go to a temporary file in the target folder and are renamed into place, so
an interrupted write never leaves a truncated file where a good one stood.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "atomic_write",
    "read_npz",
    "unflatten_dict",
    "write_npz",
]


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write a file through ``write(f)`` on a temporary file, then rename it to ``path``.

    The parent folder is created when missing. The file is fsynced before the rename and
    made world-readable (``0o644``); on any error the temporary file is removed and ``path``
    is left as it was.

    Returns:
      ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp_", suffix=path.name)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; these files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def write_npz(
    path: str | os.PathLike, arrays: Mapping[str, Any], *, compressed: bool = False
) -> Path:
    """Write ``{name: array}`` as an ``.npz`` file, atomically (no object arrays).

    Args:
      path: the file to write; its parent folder is created when missing.
      arrays: flat mapping of names to array-likes (JAX arrays are copied to numpy).
      compressed: ``np.savez_compressed`` instead of ``np.savez``.

    Raises:
      ValueError: when an array has ``dtype=object`` (it would need a pickle).
    """
    flat = {str(k): np.asarray(v) for k, v in arrays.items()}
    for name, value in flat.items():
        if value.dtype == object:
            raise ValueError(f"{path}: array {name!r} has dtype=object; npz files hold numbers only.")
    save = np.savez_compressed if compressed else np.savez
    return atomic_write(path, lambda f: save(f, **flat))


#: The first bytes of a zip archive (an ``.npz`` file is one; ``PK\x05\x06``: empty archive).
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _reason(err: Exception) -> str:
    """Why numpy could not read the file, never advising to load pickles."""
    text = str(err)
    if "pickle" in text.lower() or "object arrays" in text.lower():
        return "it holds Python objects, not plain arrays; mpjax reads numbers only"
    return text or type(err).__name__


def read_npz(path: str | os.PathLike, what: str = "an .npz file") -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file, read eagerly, pickles refused.

    The file must be a zip archive of ``.npy`` arrays; anything else (random bytes, a bare
    ``.npy``, object arrays) is refused with a message that never suggests loading pickles.

    Args:
      path: the file.
      what: how the error message names the expected file (e.g. ``"a record file"``).

    Raises:
      ValueError: when the file is missing, truncated or not an ``.npz``; the message names
        the path.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as e:
        raise ValueError(f"{path}: cannot read {what} ({e.strerror or e}).") from e
    if head not in _ZIP_MAGIC:
        raise ValueError(
            f"{path}: cannot read {what} (not a zip archive of arrays: the file is damaged "
            "or of another format)."
        )
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: np.asarray(f[k]) for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise ValueError(f"{path}: cannot read {what} ({_reason(e)}).") from e


def unflatten_dict(flat: Mapping[str, Any], sep: str = "/") -> dict:
    """``{"a/b/c": x}`` -> ``{"a": {"b": {"c": x}}}``.

    Raises:
      ValueError: when a key is both a leaf and the prefix of another key.

    Examples:
      >>> unflatten_dict({"a/b": 1, "a/c": 2, "d": 3})
      {'a': {'b': 1, 'c': 2}, 'd': 3}
    """
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(sep)
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{key}: '{part}' is both a tensor and a prefix of other keys.")
        if isinstance(node.get(leaf), dict):
            raise ValueError(f"{key}: '{leaf}' is both a tensor and a prefix of other keys.")
        node[leaf] = value
    return out
