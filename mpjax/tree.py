"""Weight-leaf selection and matrix views over Flax parameter pytrees.

Every analysis and pruning rule in mpjax works on a *matrix view* ``W`` of shape
``(d_out, d_in)`` (the orientation of ``torch.nn.Linear.weight``), whatever the leaf
layout in the parameter tree:

========================  ===========================  ======================
leaf                      leaf shape                   matrix view
========================  ===========================  ======================
Linen ``Dense`` kernel    ``(in, out)``                ``kernel.T``
Conv kernel (2-D)         ``(kh, kw, cin, cout)``      ``(cout, kh*kw*cin)``
Conv kernel (1-D)         ``(w, cin, cout)``           ``(cout, w*cin)``
``DenseGeneral`` q/k/v    ``(in, heads, head_dim)``    ``(heads*head_dim, in)``
``DenseGeneral`` out      ``(heads, head_dim, out)``   ``(out, heads*head_dim)``
torch ``Linear.weight``   ``(out, in)``                itself
torch ``Conv1d.weight``   ``(cout, cin, w)``           ``(cout, cin*w)``
torch ``Conv2d.weight``   ``(cout, cin, kh, kw)``      ``(cout, cin*kh*kw)``
========================  ===========================  ======================

A Linen/NNX ``kernel`` is read by its rank and the name of its module (the path part before
``kernel``): 2-D is a ``Dense``; 4-D and 5-D are 2-D and 3-D convolutions; 3-D is a 1-D
convolution when the module name starts with ``Conv`` (Linen's ``Conv_0``,
``ConvTranspose_0``; any case, e.g. ``conv1``), else a ``DenseGeneral`` (attention
output when the module is named ``out``, ``o_proj``, ``out_proj`` or ``proj``, else
attention input). A torch ``weight`` of rank 3 to 5 is a ``Conv1d`` / ``Conv2d`` /
``Conv3d`` weight. Pass ``kinds={path: kind}`` to :func:`select` where a name misleads.
Complex-valued weights are refused (a real matrix view would lose the imaginary part).

The inverse map restores the leaf exactly (a transpose and a reshape, no arithmetic).
Masks live in leaf layout; they are computed in view layout and mapped back.

Paths are printable strings: the keys of the tree joined by ``/``, e.g.
``encoderblock_3/MlpBlock_0/Dense_0/kernel``. ``nnx.State`` trees are supported: the
trailing ``value`` attribute of a ``Variable`` is dropped from the path.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any

#: Leaf layouts understood by :func:`to_matrix` / :func:`from_matrix`.
KINDS = ("dense", "conv", "attn_in", "attn_out", "torch_linear", "torch_conv")

# Names of Flax / torch modules whose 3-D kernels contract over their first two axes.
_ATTN_OUT_NAMES = ("out", "o_proj", "out_proj", "proj")
_VARIABLE_ATTRS = ("value", "raw_value")
# Ranks each kind accepts (convolutions: 1-D, 2-D and 3-D kernels).
_RANKS = {
    "dense": (2,),
    "conv": (3, 4, 5),
    "attn_in": (3,),
    "attn_out": (3,),
    "torch_linear": (2,),
    "torch_conv": (3, 4, 5),
}
# 2-D torch ``*.weight`` tensors under these names are lookup tables, not matrices.
_EMBEDDING_HINTS = ("embed", "wte", "wpe", "pos_")


@dataclasses.dataclass(frozen=True)
class LayerView:
    """How one parameter leaf is seen as a ``(d_out, d_in)`` matrix.

    Attributes:
      path: ``/``-joined key path of the leaf.
      kind: one of :data:`KINDS`.
      leaf_shape: shape of the leaf in the parameter tree.
      d_out: rows of the matrix view (output features).
      d_in: columns of the matrix view (the reduction axis; N:M groups run along it).
    """

    path: str
    kind: str
    leaf_shape: tuple[int, ...]
    d_out: int
    d_in: int

    @property
    def shape(self) -> tuple[int, int]:
        """``(d_out, d_in)``."""
        return (self.d_out, self.d_in)

    @property
    def layer(self) -> str:
        """The module path, i.e. ``path`` without its final leaf name."""
        return self.path.rsplit("/", 1)[0] if "/" in self.path else self.path


def key_to_str(key: Any) -> str:
    """One path entry (``DictKey``, ``GetAttrKey``, ``SequenceKey`` ...) as a string."""
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def path_to_str(path: Iterable[Any]) -> str:
    """A ``jax.tree_util`` key path as ``a/b/c``; drops ``nnx.Variable`` value attributes."""
    parts = [key_to_str(k) for k in path]
    while len(parts) > 1 and parts[-1] in _VARIABLE_ATTRS:
        parts.pop()
    return "/".join(parts)


def natural_key(path: str) -> list:
    """Sort key that orders numbered layers by depth (``block_2`` before ``block_10``).

    Flax stores sub-modules in lexicographic order; reports read better in model order.

    Examples:
      >>> sorted(["b_10/k", "b_2/k", "b_1/k"], key=natural_key)
      ['b_1/k', 'b_2/k', 'b_10/k']
    """
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", path)]


def flatten(tree: PyTree) -> dict[str, Any]:
    """All array leaves of ``tree`` keyed by printable path, in tree order.

    ``None`` leaves (skipped by a transform) are left out.
    """
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {path_to_str(p): leaf for p, leaf in leaves}


def unflatten_like(tree: PyTree, by_path: Mapping[str, Any], fill: Any = None) -> PyTree:
    """A tree with ``tree``'s structure whose leaves come from ``by_path``.

    Leaves whose path is not in ``by_path`` become ``fill`` (``None`` by default, the mpjax
    convention for "skipped by this transform").
    """
    paths, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return jax.tree_util.tree_unflatten(
        treedef, [by_path.get(path_to_str(p), fill) for p, _ in paths]
    )


def _leaf_name(path: str) -> str:
    return path.rsplit("/", 1)[-1].rsplit(".", 1)[-1]


def _module_name(path: str) -> str:
    parts = path.replace(".", "/").split("/")
    return parts[-2] if len(parts) > 1 else ""


def infer_kind(path: str, shape: tuple[int, ...]) -> str | None:
    """The matrix-view kind of a leaf, or ``None`` when it is not a weight matrix.

    Linen/NNX kernels are named ``kernel``; torch-layout tensors are named ``weight``.
    Biases, norm scales, embedding and position tables are never weight matrices. The rules
    (rank and module name) are in the module docstring.

    Examples:
      >>> infer_kind("Conv_0/kernel", (3, 16, 32)), infer_kind("attn/query/kernel", (8, 2, 4))
      ('conv', 'attn_in')
    """
    name = _leaf_name(path)
    ndim = len(shape)
    if name == "kernel":
        if ndim == 2:
            return "dense"
        if ndim in (4, 5):
            return "conv"
        if ndim == 3:
            module = _module_name(path)
            if module.lower().startswith("conv"):
                return "conv"  # a 1-D convolution (width, in, out), not a DenseGeneral
            return "attn_out" if module in _ATTN_OUT_NAMES else "attn_in"
        return None
    if name == "weight":
        lowered = path.lower()
        if ndim == 2 and not any(h in lowered for h in _EMBEDDING_HINTS):
            return "torch_linear"
        if ndim in (3, 4, 5):
            return "torch_conv"  # Conv1d / Conv2d / Conv3d: (out, in, *kernel_size)
    return None


def view_of(path: str, shape: tuple[int, ...], kind: str | None = None) -> LayerView:
    """The :class:`LayerView` of a leaf with this path and shape.

    Raises:
      ValueError: if the leaf is not a weight matrix or ``kind`` does not fit its rank.
    """
    shape = tuple(int(d) for d in shape)
    kind = kind or infer_kind(path, shape)
    if kind is None:
        raise ValueError(
            f"{path}: leaf of shape {shape} is not a weight matrix (expected a 2-D to 5-D "
            "'kernel' or a 2-D to 5-D torch 'weight'); pass kind= to force a layout."
        )
    if kind not in _RANKS:
        raise ValueError(f"{path}: unknown kind {kind!r}; expected one of {KINDS}.")
    if len(shape) not in _RANKS[kind]:
        want = " or ".join(f"{r}-D" for r in _RANKS[kind])
        raise ValueError(f"{path}: kind {kind!r} needs a {want} leaf, got shape {shape}.")
    if kind == "dense":
        d_in, d_out = shape
    elif kind == "conv":
        d_in, d_out = int(np.prod(shape[:-1])), shape[-1]
    elif kind == "attn_in":
        d_in, d_out = shape[0], shape[1] * shape[2]
    elif kind == "attn_out":
        d_in, d_out = shape[0] * shape[1], shape[2]
    elif kind == "torch_linear":
        d_out, d_in = shape
    else:  # torch_conv
        d_out, d_in = shape[0], int(np.prod(shape[1:]))
    return LayerView(path=path, kind=kind, leaf_shape=shape, d_out=d_out, d_in=d_in)


def to_matrix(leaf: Any, view: LayerView) -> Any:
    """The ``(d_out, d_in)`` matrix view of ``leaf`` (numpy or jax array, same dtype)."""
    if view.kind in ("torch_linear", "torch_conv"):
        return leaf.reshape(view.d_out, view.d_in)
    return leaf.reshape(view.d_in, view.d_out).T


def from_matrix(matrix: Any, view: LayerView) -> Any:
    """Inverse of :func:`to_matrix`: the leaf layout of a ``(d_out, d_in)`` matrix."""
    if matrix.shape != view.shape:
        raise ValueError(f"{view.path}: matrix of shape {matrix.shape}, expected {view.shape}.")
    if view.kind in ("torch_linear", "torch_conv"):
        return matrix.reshape(view.leaf_shape)
    return matrix.T.reshape(view.leaf_shape)


Selector = Callable[[str, tuple[int, ...]], bool] | str | Iterable[str] | None


def _matches(path: str, patterns: Selector, shape: tuple[int, ...]) -> bool:
    if patterns is None:
        return True
    if callable(patterns):
        return bool(patterns(path, shape))
    if isinstance(patterns, str):
        patterns = [patterns]
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def select(
    params: PyTree,
    include: Selector = None,
    exclude: Selector = None,
    kinds: Mapping[str, str] | None = None,
) -> dict[str, LayerView]:
    """The weight matrices of ``params``, keyed by path, in tree order.

    Args:
      params: a Linen ``params`` dict, an ``nnx.State``, or a flat ``{name: array}`` dict in
        torch layout (e.g. a safetensors file).
      include: glob pattern(s) over paths (``fnmatch``: ``*`` also crosses ``/``), or a
        predicate ``(path, shape) -> bool``; default every weight matrix.
      exclude: same form; matched leaves are dropped.
      kinds: explicit ``{path: kind}`` overrides for layouts the name rules cannot infer.

    Returns:
      ``{path: LayerView}`` for Dense, DenseGeneral and Conv kernels (or torch-layout
      weights); never biases, norms, embedding or position tables.

    Raises:
      ValueError: a selected weight has a complex dtype (the message names its path).
    """
    kinds = dict(kinds or {})
    out: dict[str, LayerView] = {}
    for path, leaf in flatten(params).items():
        shape = tuple(np.shape(leaf))
        kind = kinds.get(path) or infer_kind(path, shape)
        if kind is None or not _matches(path, include, shape):
            continue
        if exclude is not None and _matches(path, exclude, shape):
            continue
        _check_real(path, leaf)
        out[path] = view_of(path, shape, kind)
    return out


def _check_real(path: str, leaf: Any) -> None:
    """Refuse a complex weight: its real matrix view would drop the imaginary part."""
    dtype = getattr(leaf, "dtype", None)
    if dtype is not None and np.dtype(dtype).kind == "c":
        raise ValueError(
            f"{path}: weight has complex dtype {np.dtype(dtype)}; mpjax analyses real weight "
            "matrices only: pass its real and imaginary parts as separate leaves or exclude it."
        )


def matrices(params: PyTree, views: Mapping[str, LayerView] | None = None) -> dict[str, Any]:
    """``{path: W}`` with every selected leaf in its ``(d_out, d_in)`` view."""
    views = select(params) if views is None else views
    leaves = flatten(params)
    missing = [p for p in views if p not in leaves]
    if missing:
        raise ValueError(f"{missing[0]}: path not found in params (views from another tree?).")
    return {p: to_matrix(leaves[p], v) for p, v in views.items()}


def replace_matrices(
    params: PyTree, new: Mapping[str, Any], views: Mapping[str, LayerView]
) -> PyTree:
    """``params`` with the leaves at ``new``'s paths replaced by ``from_matrix(new[p])``.

    The tree structure is kept; leaves not named in ``new`` are returned as they are.
    """
    unknown = [p for p in new if p not in views]
    if unknown:
        raise ValueError(f"{unknown[0]}: no LayerView for this path; select() it first.")
    paths, treedef = jax.tree_util.tree_flatten_with_path(params)
    leaves = []
    for p, leaf in paths:
        key = path_to_str(p)
        leaves.append(from_matrix(new[key], views[key]) if key in new else leaf)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def check_finite(params: PyTree, views: Mapping[str, LayerView] | None = None) -> None:
    """Raise ``ValueError`` naming the first weight matrix with a NaN or Inf entry."""
    views = select(params) if views is None else views
    leaves = flatten(params)
    for path in views:
        if not np.all(np.isfinite(np.asarray(leaves[path]))):
            raise ValueError(f"{path}: weight contains NaN or Inf; fix or exclude this layer.")


def check_finite_leaves(params: PyTree, where: str = "params") -> None:
    """Raise ``ValueError`` naming the first floating leaf of ``params`` with a NaN or Inf.

    Unlike :func:`check_finite` this reads *every* floating leaf: LayerNorm scales, biases,
    embedding and position tables too (a NaN there poisons every forward pass as surely as
    one in a weight matrix). Integer and bool leaves (masks, counters) are skipped.

    Args:
      params: any pytree of arrays.
      where: how the message names the tree (e.g. the source path).

    Raises:
      ValueError: ``"<where>: parameter '<path>' holds NaN or Inf ..."``.
    """
    for path, leaf in flatten(params).items():
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.inexact):
            continue
        if not np.all(np.isfinite(np.asarray(leaf))):
            raise ValueError(
                f"{where}: parameter {path!r} holds NaN or Inf; the file is corrupt or the "
                "run diverged: load an earlier checkpoint or re-export the model."
            )


def empty_selection_message(params: Any, include: Any = None, exclude: Any = None) -> str:
    """Why :func:`select` found no weight matrix: blames the globs only when some were given."""
    if include is None and exclude is None:
        n = len(flatten(params))
        return (
            f"params: none of its {n} leaves is a weight matrix (mpjax reads Linen/NNX 'kernel' "
            "leaves and torch-layout 'weight' tensors of rank 2 to 5); check that the source "
            "holds a model's parameters."
        )
    if select(params):
        return (
            f"params: no weight matrix matches include={include!r} exclude={exclude!r}; "
            "check the globs (they match '/'-joined paths such as 'Dense_0/kernel')."
        )
    return empty_selection_message(params)
