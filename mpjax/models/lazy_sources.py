"""Model sources opened lazily: :func:`open_source` reads a leaf only when it is asked for.

:func:`open_source` takes every source :func:`mpjax.models.sources.load_source` takes and
returns a :class:`mpjax.lazy.LazyTree` with the same paths, shapes and values:

* ``.npz``, ``.safetensors`` (single file or sharded: ``*.index.json`` or a directory holding
  ``model.safetensors.index.json``) and orbax directories are read leaf by leaf
  (:mod:`mpjax.lazy`); ``.npz`` names are fixed as the eager loader fixes them;
* a random init (``vit-l16`` ...) draws one leaf at a time, with the values
  :func:`~mpjax.models.sources.random_init` draws (the generator's state before each leaf is
  remembered, so a leaf is drawn again without the others);
* the shipped models are small and are loaded whole.

Every leaf that is not a weight matrix (biases, norms, embeddings) is read and checked for
NaN/Inf when the source is opened, a few at a time; weight matrices are checked when loaded
(:func:`mpjax.mp.analyze` does); a random init is not read at open. Masks saved beside an orbax checkpoint are not read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mpjax import lazy, tree
from mpjax.models import convert, sources, vit

__all__ = [
    "open_source",
    "random_tree",
]

#: Bytes of small leaves read at once while they are checked for NaN/Inf.
CHECK_BYTES = 1 << 26


class _RandomReader:
    """Leaves of :func:`~mpjax.models.sources.random_init`, drawn one at a time.

    The state of the generator before leaf ``i`` (tree order) is kept once it is known; a
    leaf whose state is not yet known is reached by drawing (and dropping) the leaves
    between the last known state and it.
    """

    def __init__(self, shapes: dict[str, tuple[int, ...]], seed: int):
        self.shapes = shapes
        self.order = list(shapes)
        self.rng = np.random.default_rng(seed)
        self.states = [self.rng.bit_generator.state]

    def _draw(self, i: int) -> np.ndarray:
        self.rng.bit_generator.state = self.states[i]
        path = self.order[i]
        leaf = sources.random_leaf(self.rng, path, self.shapes[path])
        if len(self.states) == i + 1:
            self.states.append(self.rng.bit_generator.state)
        return leaf

    def __call__(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        out = {}
        for key in keys:
            i = self.order.index(key)
            while len(self.states) <= i:
                self._draw(len(self.states) - 1)
            out[key] = self._draw(i)
        return out


def random_tree(config: vit.ViTConfig | str, seed: int = 0) -> lazy.LazyTree:
    """:func:`~mpjax.models.sources.random_init` as a :class:`~mpjax.lazy.LazyTree`."""
    config = vit.config_for(config) if isinstance(config, str) else config
    flat = tree.flatten(vit.abstract_params(config))
    shapes = {p: tuple(x.shape) for p, x in flat.items()}
    leaves = {p: lazy.Stored(p, s, np.dtype(np.float32)) for p, s in shapes.items()}
    return lazy.LazyTree(leaves, _RandomReader(shapes, seed), f"vit random init {seed}", True)


def _is_matrix(t: lazy.LazyTree, path: str) -> bool:
    return tree.infer_kind(path, t.shape(path)) is not None


def _lazy_npz(path: Path) -> tuple[lazy.LazyTree, list[str]]:
    """The file with its names fixed like the eager loader (non-matrix leaves read now)."""
    raw = lazy.open_npz(path)
    small = raw.load([p for p in raw.paths if not _is_matrix(raw, p)])
    flat, notes = convert.fix_vit_names({p: small.get(p, raw.entry(p)) for p in raw.paths})
    return raw.with_leaves(flat, nested=True), notes


def _check_small_leaves(t: lazy.LazyTree, where: str) -> None:
    """Read every leaf that is not a weight matrix, a few at a time, and refuse NaN/Inf."""
    batch: list[str] = []
    small = [p for p in t.paths if not _is_matrix(t, p)]
    for i, path in enumerate(small):
        batch.append(path)
        size = sum(int(np.prod(t.shape(p))) * t.stored_dtype(p).itemsize for p in batch)
        if size >= CHECK_BYTES or i == len(small) - 1:
            tree.check_finite_leaves(t.load(batch), where=where)
            batch = []


def open_source(source: str | Path, *, seed: int = 0) -> tuple[lazy.LazyTree, Any]:
    """A source as a :class:`~mpjax.lazy.LazyTree` and its :class:`SourceInfo`.

    Args:
      source: a path or a name, as :func:`~mpjax.models.sources.load_source` takes.
      seed: seed of a named random init.

    Returns:
      ``(lazy_tree, info)``; ``info.masks`` is ``None`` for orbax (masks are not read).

    Raises:
      ValueError: what :func:`~mpjax.models.sources.load_source` raises (an unknown name,
        a missing or unreadable file, a NaN/Inf in a leaf that is not a weight matrix), and
        a missing shard or a tensor no shard holds (the message names the file and tensor).
    """
    text, path = str(source), Path(source)
    Info = sources.SourceInfo
    if text.lower() in sources.RANDOM_INITS and not path.exists():
        config = vit.config_for(text)
        # drawn here, finite by construction: checking would draw the whole model once more
        return random_tree(config, seed), Info("random", text, config, "flax", seed=seed)
    if path.name.endswith(".index.json") or (path / lazy.INDEX_NAME).is_file():
        t = lazy.open_safetensors(path)
        info = Info("safetensors", text, None, convert.detect_layout(t.paths))
    elif path.is_dir():
        t = lazy.open_orbax(path)
        info = Info("orbax", text, sources._maybe_config(t.abstract), "flax")
    elif path.is_file() and path.suffix == ".npz":
        t, notes = _lazy_npz(path)
        info = Info("npz", text, sources._maybe_config(t.abstract), "flax", renamed=tuple(notes))
    elif path.is_file() and path.suffix == ".safetensors":
        t = lazy.open_safetensors(path)
        info = Info("safetensors", text, None, convert.detect_layout(t.paths))
    else:  # shipped models (small) and every refusal of the eager loader
        params, info = sources.load_source(source, seed=seed)
        return lazy.LazyTree.from_tree(params, text), info
    _check_small_leaves(t, where=f"source {text!r}")
    return t, info
