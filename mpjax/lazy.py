"""Parameter trees read one group of leaves at a time: checkpoints larger than memory.

A :class:`LazyTree` knows every leaf's path, shape and stored dtype up front (from the file
headers) and reads the arrays only when :meth:`LazyTree.load` asks for them, so a pass over
the layers (the per-layer MP analysis) holds a few layers at once instead of the whole model.

==========================================  ===============================================
format                                      how one leaf is read
==========================================  ===============================================
``.npz`` (:func:`open_npz`)                 its zip member alone (``.npy`` header first)
``.safetensors`` (:func:`open_safetensors`) its byte range, read into a fresh array (no
                                            memory map, so no page of the file stays
                                            counted in the process's resident memory)
sharded safetensors (``*.index.json``)      the shard the index's ``weight_map`` names
orbax directory (:func:`open_orbax`)        an orbax partial restore of the asked leaves
==========================================  ===============================================

``bfloat16`` and ``float16`` leaves are widened to ``float32`` when loaded (the precision the
spectra compute in anyway); other dtypes are returned as stored. :meth:`LazyTree.abstract`
has the structure the eager loaders of :mod:`mpjax.models.sources` return (nested dicts for
``.npz`` and orbax, a flat ``{name: array}`` dict in torch layout for safetensors), so paths,
and hence reports, are the same either way.

Examples:
  >>> import numpy as np, tempfile, os
  >>> d = tempfile.mkdtemp()
  >>> _ = np.savez(os.path.join(d, "m.npz"), **{"Dense_0/kernel": np.eye(3, dtype=np.float32)})
  >>> lazy = open_npz(os.path.join(d, "m.npz"))
  >>> lazy.paths, lazy.shape("Dense_0/kernel")
  (['Dense_0/kernel'], (3, 3))
  >>> lazy.load(["Dense_0/kernel"])["Dense_0/kernel"].sum()
  np.float32(3.0)
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import ml_dtypes
import numpy as np

from mpjax import npz, tree

__all__ = [
    "LazyTree",
    "Stored",
    "open_npz",
    "open_orbax",
    "open_safetensors",
]

#: safetensors dtype tags mpjax reads (little-endian, as the format stores them).
SAFETENSORS_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}  # fmt: skip
#: Dtypes widened to float32 by :meth:`LazyTree.load`.
HALF = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))


class Stored(NamedTuple):
    """One leaf as a file stores it: its key there, shape and dtype."""

    key: str
    shape: tuple[int, ...]
    dtype: np.dtype


Reader = Callable[[Sequence[str]], dict[str, np.ndarray]]


class LazyTree:
    """A parameter tree whose leaves are read on demand.

    Args:
      leaves: ``{path: Stored or array}`` in tree order; an array is a leaf already in memory.
      read: ``read(keys) -> {key: array}`` for :class:`Stored` keys (stored dtype).
      where: how messages name the source (a path or a name).
      nested: whether :attr:`abstract` is a nested dict (``"a/b"`` split at ``/``) or flat.
    """

    def __init__(self, leaves: Mapping[str, Any], read: Reader, where: str, nested: bool):
        self._leaves = dict(leaves)
        self._read = read
        self.where = where
        flat = {p: jax.ShapeDtypeStruct(tuple(np.shape(v)), v.dtype) for p, v in leaves.items()}
        self.abstract = npz.unflatten_dict(flat) if nested else flat
        self.nested = nested

    @classmethod
    def from_tree(cls, params: Any, where: str) -> LazyTree:
        """A tree already in memory, seen through this interface (nothing is read)."""
        nested = isinstance(params, Mapping) and any(
            isinstance(v, Mapping) for v in params.values()
        )
        return cls(tree.flatten(params), _nothing_stored, where, nested)

    def with_leaves(self, leaves: Mapping[str, Any], nested: bool) -> LazyTree:
        """A tree of other leaves (renamed :class:`Stored` records, arrays) on the same reader."""
        return LazyTree(leaves, self._read, self.where, nested)

    @property
    def paths(self) -> list[str]:
        """Every leaf path, in tree order."""
        return list(self._leaves)

    def shape(self, path: str) -> tuple[int, ...]:
        """The shape of one leaf (nothing is read)."""
        return tuple(np.shape(self.entry(path)))

    def stored_dtype(self, path: str) -> np.dtype:
        """The dtype of one leaf as stored (before any widening)."""
        return np.dtype(self.entry(path).dtype)

    def nbytes(self) -> int:
        """Bytes of every leaf as stored."""
        return sum(int(np.prod(self.shape(p))) * self.stored_dtype(p).itemsize for p in self.paths)

    def entry(self, path: str) -> Any:
        """The :class:`Stored` record of a leaf, or the array of a leaf held in memory."""
        if path not in self._leaves:
            raise KeyError(f"{self.where}: no parameter {path!r} ({len(self._leaves)} leaves).")
        return self._leaves[path]

    def load(self, paths: Sequence[str]) -> dict[str, np.ndarray]:
        """``{path: array}`` of the asked leaves, half precision widened to float32.

        Raises:
          KeyError: a path not in the tree.
          ValueError: the file cannot deliver a leaf (the message names file and tensor).
        """
        entries = {p: self.entry(p) for p in paths}
        keys = [e.key for e in entries.values() if isinstance(e, Stored)]
        read = self._read(keys) if keys else {}
        out = {}
        for path, e in entries.items():
            value = np.asarray(read.pop(e.key) if isinstance(e, Stored) else e)
            out[path] = value.astype(np.float32) if value.dtype in HALF else value
        return out

    def materialize(self) -> Any:
        """The whole tree in memory (the eager loaders' result, half precision widened).

        Read one leaf at a time, so the peak is the widened tree plus one stored leaf.
        """
        flat = {}
        for path in self.paths:
            flat.update(self.load([path]))
        return npz.unflatten_dict(flat) if self.nested else flat


def _nothing_stored(keys: Sequence[str]) -> dict[str, np.ndarray]:
    raise KeyError(f"{list(keys)[:1]}: this tree holds no stored leaves.")


# ---------------------------------------------------------------------------------------- npz


def _npy_header(member: Any) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from an ``.npy`` stream's header (the data is not read)."""
    version = np.lib.format.read_magic(member)
    read = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }
    shape, _fortran, dtype = read.get(version, np.lib.format.read_array_header_2_0)(member)
    return tuple(shape), np.dtype(dtype)


def open_npz(path: str | os.PathLike) -> LazyTree:
    """An ``.npz`` file as a flat :class:`LazyTree` keyed by its array names.

    Raises:
      ValueError: the file is missing, not a zip of ``.npy`` arrays, or holds objects.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            leaves = {}
            for info in zf.infolist():
                name = info.filename.removesuffix(".npy")
                with zf.open(info) as member:
                    shape, dtype = _npy_header(member)
                if dtype.hasobject:
                    raise ValueError(
                        f"{path}: array {name!r} holds Python objects; mpjax reads numbers only."
                    )
                leaves[name] = Stored(name, shape, dtype)
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{path}: cannot read an .npz parameter file ({e}).") from e

    def read(keys: Sequence[str]) -> dict[str, np.ndarray]:
        with np.load(path, allow_pickle=False) as f:  # reads only the members asked for
            return {k: np.asarray(f[k]) for k in keys}

    return LazyTree(leaves, read, str(path), nested=True)


# -------------------------------------------------------------------------------- safetensors

#: The index file name of a sharded Hugging Face checkpoint.
INDEX_NAME = "model.safetensors.index.json"


class _Tensor(NamedTuple):
    """Where one tensor's bytes lie in a ``.safetensors`` file."""

    file: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int


def _safetensors_header(path: Path) -> dict[str, _Tensor]:
    """``{name: _Tensor}`` from a file's JSON header, every byte range checked.

    Layout: 8 bytes little-endian header length ``N``, ``N`` bytes of JSON, then the data;
    a tensor's ``data_offsets`` count from the end of the header.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > size - 8:
                raise ValueError(f"header length {n} exceeds the file")
            header = json.loads(fh.read(n))
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable .safetensors file ({e}).") from e
    out = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        dtype = SAFETENSORS_DTYPES.get(spec.get("dtype"))
        if dtype is None:
            raise ValueError(
                f"{path}: tensor {name!r} has dtype {spec.get('dtype')!r}; "
                f"mpjax reads {sorted(SAFETENSORS_DTYPES)}."
            )
        shape = tuple(int(d) for d in spec["shape"])
        begin, end = spec["data_offsets"]
        if end - begin != int(np.prod(shape)) * dtype.itemsize or 8 + n + end > size:
            raise ValueError(
                f"{path}: tensor {name!r} lies outside the file or disagrees with "
                "its shape; the file is truncated or corrupt."
            )
        out[name] = _Tensor(path, shape, dtype, 8 + n + begin)
    return out


def _read_tensor(t: _Tensor, name: str) -> np.ndarray:
    """One tensor's bytes read into a fresh array (no memory map)."""
    count = int(np.prod(t.shape))
    try:
        data = np.fromfile(t.file, dtype=t.dtype, count=count, offset=t.offset)
    except OSError as e:
        raise ValueError(f"{t.file}: cannot read tensor {name!r} ({e}).") from e
    if data.size != count:
        raise ValueError(f"{t.file}: tensor {name!r} is cut short; the file is truncated.")
    return data.reshape(t.shape)


def _index_tensors(index: Path) -> dict[str, _Tensor]:
    """Every tensor a sharded checkpoint's ``weight_map`` names, from its shard's header."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        shards = {str(s) for s in weight_map.values()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(
            f"{index}: not a safetensors index (a JSON 'weight_map' of tensor -> shard file) ({e})."
        ) from e
    headers = {}
    for shard in sorted(shards):
        if not (index.parent / shard).is_file():
            raise ValueError(
                f"{index}: shard file {shard!r} is missing from {index.parent}; "
                "download every shard the index names."
            )
        headers[shard] = _safetensors_header(index.parent / shard)
    out = {}
    for name in sorted(weight_map):
        shard = str(weight_map[name])
        if name not in headers[shard]:
            raise ValueError(
                f"{index}: tensor {name!r} is mapped to shard {shard!r}, which "
                "does not hold it; the index and its shards disagree."
            )
        out[name] = headers[shard][name]
    return out


def open_safetensors(path: str | os.PathLike) -> LazyTree:
    """A ``.safetensors`` file, a sharded checkpoint's ``*.index.json``, or a directory
    holding ``model.safetensors.index.json``, as a flat :class:`LazyTree` (torch layout).

    Raises:
      ValueError: an unreadable header, a missing shard, or an index naming a tensor that
        its shard does not hold (the message names the file and the tensor).
    """
    path = Path(path)
    if path.is_dir():
        path = path / INDEX_NAME
    is_index = path.name.endswith(".index.json")
    tensors = _index_tensors(path) if is_index else _safetensors_header(path)
    leaves = {name: Stored(name, t.shape, t.dtype) for name, t in tensors.items()}

    def read(keys: Sequence[str]) -> dict[str, np.ndarray]:
        return {k: _read_tensor(tensors[k], k) for k in keys}

    return LazyTree(leaves, read, str(path), nested=False)


# -------------------------------------------------------------------------------------- orbax


def open_orbax(directory: str | os.PathLike) -> LazyTree:
    """A checkpoint of :func:`mpjax.checkpoint.save_params` read by orbax partial restores.

    Shapes and dtypes come from the checkpoint's metadata; :meth:`LazyTree.load` restores
    only the asked leaves, as numpy arrays on the host.

    Raises:
      ValueError: foreign or truncated directory (the message of
        :func:`mpjax.checkpoint.restore_params`).
    """
    from mpjax import checkpoint  # orbax: imported only when needed

    directory = Path(directory).absolute()
    record = checkpoint._read_meta(directory, checkpoint.PARAMS_FORMAT)
    leaves = {p: Stored(p, tuple(s), np.dtype(d)) for p, (s, d) in record["shapes"].items()}

    def read(keys: Sequence[str]) -> dict[str, np.ndarray]:
        return _restore_leaves(directory, {k: leaves[k] for k in keys})

    return LazyTree(leaves, read, str(directory), nested=True)


def _restore_leaves(directory: Path, leaves: Mapping[str, Stored]) -> dict[str, Any]:
    """``{path: numpy array}`` of some leaves of an orbax ``params`` item (partial restore)."""
    import orbax.checkpoint as ocp

    from mpjax import checkpoint

    item = npz.unflatten_dict({p: np.zeros((), s.dtype) for p, s in leaves.items()})
    restore = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
    args = ocp.args.PyTreeRestore(item=item, restore_args=restore, partial_restore=True)
    checkpoint._quiet_stragglers()
    try:
        with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as ckptr:
            out = ckptr.restore(directory / "params", args=args)
    except Exception as e:  # orbax/tensorstore raise many types for damaged files
        raise checkpoint._unreadable(directory, e) from e
    return {p: np.asarray(v) for p, v in tree.flatten(out).items() if p in leaves}
