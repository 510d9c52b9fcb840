"""Masks as pytrees: exact top-k masks by magnitude, applying them, checking them, counting.

A **masks pytree** has the structure of ``params``: each pruned leaf holds a bool array of
the leaf's shape (``True`` = weight kept), every other leaf holds ``None`` (optax's mask
contract). N:M masks live in :mod:`mpjax.pruning.nm`. See `docs/method/budgets.md` (exact
counts and ties).

Exact counts: a target sparsity ``s`` over ``N`` entries removes ``s * N`` rounded to the
nearest integer, ties down (``ceil(s * N - 1/2)``), and never all ``N``: a ``1 x 1`` layer
at ``s = 0.5`` keeps its weight, a ``3 x 3`` one loses 4 of 9 (0.444), and in global scope
every layer keeps at least its highest-scoring entry (a sparsity of 1 is not accepted, so no
layer is ever removed whole). Ties in the score are broken deterministically: among equal
scores the entry with the lower flat index is removed first (a stable sort on
``(score, index)``). See `docs/method/budgets.md` (exact counts and ties).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mpjax import tree
from mpjax.pruning.nm import detect_pattern

PyTree = Any

__all__ = [
    "apply_masks",
    "check_masks",
    "check_sparsity",
    "format_summary",
    "magnitude_masks",
    "n_remove",
    "remove_lowest",
    "score_masks",
    "summary",
    "topk_mask",
]


def check_sparsity(sparsity: Any, name: str = "sparsity") -> None:
    """Raise ``ValueError`` unless ``0 <= sparsity < 1`` (skipped for traced values)."""
    if isinstance(sparsity, jax.core.Tracer):
        return
    s = float(sparsity)
    if not 0.0 <= s < 1.0:
        raise ValueError(f"{name}={s} is outside [0, 1); pass the share of weights to remove.")


def n_remove(sparsity: Any, size: int) -> jax.Array:
    """Entries removed at ``sparsity`` out of ``size``, as int32 (traceable).

    ``sparsity * size`` rounded to the nearest integer, ties down, and at most ``size - 1``:
    a sparsity below 1 never removes everything.

    Examples:
      >>> [int(n_remove(0.5, n)) for n in (1, 2, 3, 9)]
      [0, 1, 1, 4]
      >>> int(n_remove(0.99, 10)), int(n_remove(0.26, 100))
      (9, 26)
    """
    s = jnp.asarray(sparsity, jnp.float32)
    count = jnp.ceil(s * size - 0.5).astype(jnp.int32)
    return jnp.clip(count, 0, max(int(size) - 1, 0))


def _sortable_key(x: jax.Array) -> jax.Array:
    """uint32 keys with the order of the float32 values (``-0.0`` is taken as ``+0.0``)."""
    x = x.astype(jnp.float32)
    b = jax.lax.bitcast_convert_type(jnp.where(x == 0, jnp.float32(0), x), jnp.uint32)
    return jnp.where((b >> 31) == 1, ~b, b | jnp.uint32(0x80000000))


@jax.jit
def remove_lowest(score: jax.Array, count: Any) -> jax.Array:
    """Keep-mask removing exactly the ``count`` lowest entries of ``score`` (any shape).

    Equal to a stable sort on ``(score, flat index)`` with the first ``count`` removed, but
    O(N) per pass: the ``count``-th smallest value ``t`` is found by a 32-step bisection on
    order-preserving integer keys, then entries ``< t`` are removed plus the lowest-index
    entries ``== t`` until the count is met. ``count`` may be traced. (XLA's CPU sort is
    several times slower on the 85M weights of a ViT-B.)
    """
    k = _sortable_key(jnp.ravel(score))
    n = jnp.asarray(count, jnp.int32)

    def body(_, lohi):
        lo, hi = lohi
        mid = lo + (hi - lo) // 2
        ok = jnp.sum(k <= mid, dtype=jnp.int32) >= n
        return jnp.where(ok, lo, mid + 1), jnp.where(ok, mid, hi)

    t, _ = jax.lax.fori_loop(0, 32, body, (jnp.uint32(0), jnp.uint32(0xFFFFFFFF)))
    below = k < t
    tie = k == t
    need = n - jnp.sum(below, dtype=jnp.int32)
    removed = (below | (tie & (jnp.cumsum(tie, dtype=jnp.int32) <= need))) & (n > 0)
    return ~removed.reshape(jnp.shape(score))


def topk_mask(score: jax.Array, sparsity: Any) -> jax.Array:
    """Keep all but the :func:`n_remove` lowest-scoring entries of ``score``.

    Exact count (``sparsity * size`` rounded to nearest, ties down, never every entry),
    deterministic ties (lower flat index removed first). ``sparsity`` may be traced, so one
    compiled function serves every sparsity.

    Args:
      score: scores of any shape.
      sparsity: the share to remove, in ``[0, 1)``.

    Returns:
      A bool keep-mask of ``score``'s shape.

    Examples:
      >>> topk_mask(jnp.array([3.0, 1.0, 1.0, 2.0]), 0.5).tolist()
      [True, False, False, True]
    """
    return remove_lowest(score, n_remove(sparsity, jnp.size(score)))


def score_masks(
    scores: Mapping[str, jax.Array], sparsity: Any, scope: str = "layer"
) -> dict[str, jax.Array]:
    """Masks removing the lowest scores, per layer or over all layers at once.

    Args:
      scores: ``{path: score array}`` (any layout; the mask has the same shape).
      sparsity: a float for every layer, or ``{path: float}`` (``scope="layer"`` only).
      scope: ``"layer"`` (each layer reaches its sparsity exactly) or ``"global"`` (the
        union of all entries reaches it exactly; layers end up with different sparsities).

    Returns:
      ``{path: bool mask}``. Every layer keeps at least one entry: in global scope the
      highest-scoring entry of each layer (the last one among equal scores) is removed only
      after everything else, so it survives unless the layer would otherwise be removed whole.
    """
    if scope == "layer":
        per = sparsity if isinstance(sparsity, Mapping) else dict.fromkeys(scores, sparsity)
        return {p: topk_mask(s, per[p]) for p, s in scores.items()}
    if scope != "global":
        raise ValueError(f"scope={scope!r}; expected 'layer' or 'global'.")
    if isinstance(sparsity, Mapping):
        raise ValueError("scope='global' takes one float sparsity, not a per-layer mapping.")
    flat = jnp.concatenate([_protect_top(jnp.ravel(s).astype(jnp.float32))
                            for s in scores.values()])
    keep = remove_lowest(flat, jnp.minimum(n_remove(sparsity, flat.size), flat.size - len(scores)))
    out, start = {}, 0
    for p, s in scores.items():
        out[p] = keep[start : start + s.size].reshape(s.shape)
        start += s.size
    return out


def _protect_top(score: jax.Array) -> jax.Array:
    """``score`` with its highest entry (the last among equal ones) raised to ``+inf``.

    Removing lowest-first, that entry goes only once everything before it in the order is
    gone, i.e. only when the layer would be removed whole: the result is otherwise unchanged.
    """
    last = score.size - 1 - jnp.argmax(score[::-1])
    return score.at[last].set(jnp.inf)


def magnitude_masks(
    params: PyTree,
    sparsity: Any,
    *,
    scope: str = "layer",
    views: Mapping[str, tree.LayerView] | None = None,
    layer_weights: Mapping[str, Any] | None = None,
) -> PyTree:
    """Unstructured magnitude masks: remove the smallest ``|W| / w_l``.

    Args:
      params: parameter pytree.
      sparsity: float in ``[0, 1)`` or ``{path: float}`` (layer scope).
      scope: ``"layer"`` or ``"global"``.
      views: layers to prune (default ``tree.select(params)``).
      layer_weights: optional ``{path: w_l > 0}`` (SEB); the score is ``|W_ij| / w_l``.

    Returns:
      Masks pytree (``None`` outside ``views``).
    """
    views = tree.select(params) if views is None else views
    for s in sparsity.values() if isinstance(sparsity, Mapping) else [sparsity]:
        check_sparsity(s)
    leaves = tree.flatten(params)
    scores = {}
    for p in views:
        a = jnp.abs(jnp.asarray(leaves[p]).astype(jnp.float32))
        scores[p] = a / layer_weights[p] if layer_weights is not None else a
    return tree.unflatten_like(params, score_masks(scores, sparsity, scope))


# ----------------------------------------------------------------------------- apply
def _paths_with_none(t: PyTree) -> list[tuple[str, Any]]:
    leaves = jax.tree_util.tree_flatten_with_path(t, is_leaf=lambda x: x is None)[0]
    return [(tree.path_to_str(p), x) for p, x in leaves]


def check_masks(params: PyTree, masks: PyTree) -> None:
    """Raise ``ValueError`` naming the first path where ``masks`` does not fit ``params``.

    Args:
      params: parameter pytree.
      masks: masks pytree (bool or ``None`` leaves, the structure of ``params``).

    Raises:
      ValueError: a path only in one of the trees, or a mask whose shape is not its leaf's.
    """
    pl, ml = _paths_with_none(params), _paths_with_none(masks)
    for (pp, pleaf), (mp_, mleaf) in zip(pl, ml, strict=False):
        if pp != mp_:
            raise ValueError(
                f"masks do not match params: first mismatch at path {pp!r} (masks has "
                f"{mp_!r}); build masks with tree.unflatten_like(params, ...)."
            )
        if mleaf is not None and tuple(np.shape(mleaf)) != tuple(np.shape(pleaf)):
            raise ValueError(
                f"{pp}: mask shape {tuple(np.shape(mleaf))} != param shape "
                f"{tuple(np.shape(pleaf))}; masks live in leaf layout."
            )
    if len(pl) != len(ml):
        longer, name = (pl, "params") if len(pl) > len(ml) else (ml, "masks")
        raise ValueError(
            f"masks do not match params: first mismatch at path {longer[min(len(pl), len(ml))][0]!r}"
            f" (only in {name})."
        )


def apply_masks(params: PyTree, masks: PyTree) -> PyTree:
    """``params`` with masked-out entries set to zero (dtype and structure kept).

    Args:
      params: parameter pytree.
      masks: masks pytree; ``None`` leaves are left alone.

    Returns:
      ``params`` with ``W * mask`` at masked leaves.

    Raises:
      ValueError: if the structure or a shape of ``masks`` does not match ``params``.
    """
    check_masks(params, masks)
    return jax.tree_util.tree_map(
        lambda p, m: p if m is None else jnp.where(m, p, jnp.zeros((), jnp.asarray(p).dtype)),
        params,
        masks,
        is_leaf=lambda x: x is None,
    )


# ----------------------------------------------------------------------------- summary
def summary(
    params: PyTree,
    masks: PyTree | None,
    tokens: int | Mapping[str, int] | None = None,
    views: Mapping[str, tree.LayerView] | None = None,
) -> dict[str, Any]:
    """Per-layer and global sparsity, parameter and MAC counts.

    MACs (1 multiply-add each, see `docs/method/macs.md`): a matrix view ``(d_out, d_in)``
    applied to ``T`` tokens costs ``T * d_in * d_out * density``. A layer whose mask is a valid ``k:n``
    pattern counts ``k/n`` of its dense MACs (the same number, flagged in ``pattern``).
    Attention's ``QK^T``/``AV`` matmuls are not weight layers and are not counted here.

    Args:
      params: parameter pytree.
      masks: masks pytree or ``None`` (dense).
      tokens: tokens per layer call (int, or ``{path: int}``, e.g. ToMe-reduced blocks);
        default 1 (MACs per token).
      views: weight matrices to report (default ``tree.select(params)``).

    Returns:
      ``{"layers": [{path, shape, params, kept, sparsity, pattern, dense_macs, macs}],
      "params", "kept", "sparsity", "dense_macs", "macs", "pruned_layers_sparsity"}``;
      global numbers are over the reported weight matrices.
    """
    views = tree.select(params) if views is None else views
    mleaves = tree.flatten(masks) if masks is not None else {}
    rows = []
    for p, v in views.items():
        size = v.d_out * v.d_in
        m = mleaves.get(p)
        kept = size if m is None else int(np.count_nonzero(np.asarray(m)))
        nm = None if m is None else detect_pattern(np.asarray(tree.to_matrix(np.asarray(m), v)))
        t = tokens.get(p, 1) if isinstance(tokens, Mapping) else (tokens or 1)
        dense_macs = int(t) * size
        rows.append(
            dict(path=p, shape=v.shape, params=size, kept=kept, sparsity=1 - kept / size,
                 pattern=None if nm is None else str(nm), pruned=m is not None,
                 dense_macs=dense_macs, macs=dense_macs * kept / size)
        )
    total = sum(r["params"] for r in rows)
    kept = sum(r["kept"] for r in rows)
    pr = [r for r in rows if r["pruned"]]
    pr_total = sum(r["params"] for r in pr)
    return dict(
        layers=rows,
        params=total,
        kept=kept,
        sparsity=1 - kept / total if total else 0.0,
        pruned_layers_sparsity=1 - sum(r["kept"] for r in pr) / pr_total if pr_total else 0.0,
        dense_macs=sum(r["dense_macs"] for r in rows),
        macs=sum(r["macs"] for r in rows),
    )


def format_summary(s: Mapping[str, Any]) -> str:
    """A plain-text table of :func:`summary`'s output."""
    lines = [f"{'path':60s} {'shape':>14s} {'sparsity':>8s} {'pattern':>7s} {'MACs':>14s}"]
    for r in s["layers"]:
        lines.append(
            f"{r['path'][:60]:60s} {str(r['shape']):>14s} {r['sparsity']:8.4f} "
            f"{r['pattern'] or '-':>7s} {r['macs']:14.0f}"
        )
    lines.append(
        f"global sparsity {s['sparsity']:.4f} ({s['kept']}/{s['params']} kept), "
        f"MACs {s['macs']:.4g} of {s['dense_macs']:.4g}"
    )
    return "\n".join(lines)
