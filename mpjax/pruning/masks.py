"""Masks as pytrees: unstructured and N:M masks, applying them, checking them, counting.

A **masks pytree** has the structure of ``params``: each pruned leaf holds a bool array of
the leaf's shape (``True`` = weight kept), every other leaf holds ``None``. N:M masks keep
``k`` of every ``n`` consecutive entries along ``d_in`` of the ``(d_out, d_in)`` matrix view
(SPEC §1), the reduction axis that sparse tensor cores need.

Exact counts: a target sparsity ``s`` over ``N`` entries removes exactly
``round_half_up(s * N)`` of them. Ties in the score are broken deterministically: among equal
scores the entry with the lower flat index is removed first (a stable sort on
``(score, index)``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mpjax import tree

PyTree = Any


def check_sparsity(sparsity: Any, name: str = "sparsity") -> None:
    """Raise ``ValueError`` unless ``0 <= sparsity < 1`` (skipped for traced values)."""
    if isinstance(sparsity, jax.core.Tracer):
        return
    s = float(sparsity)
    if not 0.0 <= s < 1.0:
        raise ValueError(f"{name}={s} is outside [0, 1); pass the share of weights to remove.")


def n_remove(sparsity: Any, size: int) -> jax.Array:
    """``round_half_up(sparsity * size)`` as int32 (traceable)."""
    s = jnp.asarray(sparsity, jnp.float32)
    return jnp.floor(s * size + 0.5).astype(jnp.int32)


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
    """Keep all but the ``round(sparsity * size)`` lowest-scoring entries of ``score``.

    Exact count, deterministic ties (lower flat index removed first). ``sparsity`` may be
    traced, so one compiled function serves every sparsity.

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
      ``{path: bool mask}``.
    """
    if scope == "layer":
        per = sparsity if isinstance(sparsity, Mapping) else dict.fromkeys(scores, sparsity)
        return {p: topk_mask(s, per[p]) for p, s in scores.items()}
    if scope != "global":
        raise ValueError(f"scope={scope!r}; expected 'layer' or 'global'.")
    if isinstance(sparsity, Mapping):
        raise ValueError("scope='global' takes one float sparsity, not a per-layer mapping.")
    flat = jnp.concatenate([jnp.ravel(s).astype(jnp.float32) for s in scores.values()])
    keep = topk_mask(flat, sparsity)
    out, start = {}, 0
    for p, s in scores.items():
        out[p] = keep[start : start + s.size].reshape(s.shape)
        start += s.size
    return out


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


# ----------------------------------------------------------------------------- N:M
def parse_pattern(pattern: str) -> tuple[int, int]:
    """``"2:4" -> (2, 4)``; raises ``ValueError`` for anything but ``0 < k < n``."""
    try:
        k, n = (int(x) for x in pattern.split(":"))
    except (ValueError, AttributeError):
        raise ValueError(f"pattern={pattern!r}: expected 'K:N' like '2:4' or '8:16'.") from None
    if not 0 < k < n:
        raise ValueError(f"pattern={pattern!r}: need 0 < K < N.")
    return k, n


@partial(jax.jit, static_argnames=("k", "n"))
def nm_matrix_mask(score: jax.Array, k: int, n: int) -> jax.Array:
    """Keep the ``k`` highest scores of every ``n`` consecutive entries along axis 1.

    ``score`` is a ``(d_out, d_in)`` matrix view with ``d_in % n == 0``. Ties: the lower
    column index is kept.
    """
    d_out, d_in = score.shape
    g = score.reshape(d_out, d_in // n, n).astype(jnp.float32)
    g = jnp.where(g == 0, jnp.float32(0), g)  # -0.0 ties with 0.0
    # rank_j = #{i : s_i > s_j or (s_i == s_j and i < j)}: O(n^2) compares, no sort.
    a, b = g[..., :, None], g[..., None, :]  # a: s_j, b: s_i
    before = jnp.asarray(np.tril(np.ones((n, n), bool), -1))  # [j, i] = i < j
    rank = jnp.sum((b > a) | ((b == a) & before), axis=-1, dtype=jnp.int32)
    return (rank < k).reshape(d_out, d_in)


def nm_skip_reasons(views: Mapping[str, tree.LayerView], n: int) -> dict[str, str]:
    """``{path: reason}`` for every layer whose ``d_in`` is not a multiple of ``n``."""
    return {
        p: f"d_in={v.d_in} is not divisible by n={n}"
        for p, v in views.items()
        if v.d_in % n
    }


def nm_views(
    views: Mapping[str, tree.LayerView], n: int, on_indivisible: str = "error"
) -> tuple[dict[str, tree.LayerView], dict[str, str]]:
    """Split ``views`` into N:M-eligible layers and ``{path: reason}`` for skipped ones.

    Raises:
      ValueError: ``on_indivisible="error"`` and some ``d_in % n != 0`` (names the path).
    """
    if on_indivisible not in ("error", "skip"):
        raise ValueError(f"on_indivisible={on_indivisible!r}; expected 'error' or 'skip'.")
    bad = nm_skip_reasons(views, n)
    if bad and on_indivisible == "error":
        p = next(iter(bad))
        raise ValueError(
            f"{p}: {bad[p]}; exclude this layer, permute/pad it, or pass on_indivisible='skip'."
        )
    if bad:
        warnings.warn(f"N:M skipped {len(bad)} layer(s): {bad}", stacklevel=2)
    return {p: v for p, v in views.items() if p not in bad}, bad


def nm_masks(
    params: PyTree,
    k: int,
    n: int,
    *,
    views: Mapping[str, tree.LayerView] | None = None,
    scores: Mapping[str, jax.Array] | None = None,
    on_indivisible: str = "error",
) -> PyTree:
    """N:M masks (keep ``k`` of every ``n`` along ``d_in``) by magnitude or given scores.

    Args:
      params: parameter pytree.
      k, n: the pattern, ``0 < k < n`` (1:4, 2:4, 4:8, 6:12, 8:16, 12:16 ...).
      views: layers to prune (default ``tree.select(params)``).
      scores: optional ``{path: score}`` in *view* layout ``(d_out, d_in)``; default ``|W|``.
      on_indivisible: ``"error"`` or ``"skip"`` (skipped layers get a ``None`` mask).

    Returns:
      Masks pytree in leaf layout.
    """
    if not 0 < k < n:
        raise ValueError(f"k={k}, n={n}: need 0 < k < n.")
    views = tree.select(params) if views is None else views
    views, _ = nm_views(views, n, on_indivisible)
    mats = tree.matrices(params, views)
    out = {}
    for p, v in views.items():
        sc = scores[p] if scores is not None else jnp.abs(mats[p])
        out[p] = tree.from_matrix(nm_matrix_mask(sc, k, n), v)
    return tree.unflatten_like(params, out)


def validate_nm(
    masks: PyTree,
    k: int,
    n: int,
    *,
    views: Mapping[str, tree.LayerView] | None = None,
    raise_on_error: bool = True,
) -> dict[str, str]:
    """Independent N:M check (numpy reshape + count), separate from the mask builders.

    Every non-``None`` mask must be bool, divisible along ``d_in`` by ``n``, and hold
    exactly ``k`` ``True`` values in each group of ``n`` consecutive ``d_in`` entries.

    Args:
      masks: masks pytree (leaf layout).
      k, n: expected pattern.
      views: optional ``{path: LayerView}``; otherwise inferred from path and shape.
      raise_on_error: raise on the first problem instead of returning them.

    Returns:
      ``{path: problem}`` (empty when every mask is valid).
    """
    problems: dict[str, str] = {}
    for path, m in tree.flatten(masks).items():
        m = np.asarray(m)
        view = views[path] if views is not None else tree.view_of(path, m.shape)
        if m.dtype != np.bool_:
            problems[path] = f"mask dtype {m.dtype}, expected bool"
            continue
        mat = np.asarray(tree.to_matrix(m, view))
        if mat.shape[1] % n:
            problems[path] = f"d_in={mat.shape[1]} not divisible by n={n}"
            continue
        counts = mat.reshape(mat.shape[0], -1, n).sum(axis=-1)
        wrong = np.argwhere(counts != k)
        if wrong.size:
            i, g = wrong[0]
            problems[path] = (
                f"{len(wrong)} group(s) do not keep exactly {k} of {n}; first at row {i}, "
                f"group {g} keeps {counts[i, g]}"
            )
    if problems and raise_on_error:
        p = next(iter(problems))
        raise ValueError(f"{p}: invalid {k}:{n} mask: {problems[p]}.")
    return problems


# ----------------------------------------------------------------------------- apply
def _paths_with_none(t: PyTree) -> list[tuple[str, Any]]:
    leaves = jax.tree_util.tree_flatten_with_path(t, is_leaf=lambda x: x is None)[0]
    return [(tree.path_to_str(p), x) for p, x in leaves]


def check_masks(params: PyTree, masks: PyTree) -> None:
    """Raise ``ValueError`` naming the first path where ``masks`` does not fit ``params``."""
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


def union_masks(a: PyTree, b: PyTree) -> PyTree:
    """Entrywise OR of two masks pytrees (``None`` counts as all-kept)."""
    return jax.tree_util.tree_map(
        lambda x, y: None if x is None or y is None else jnp.logical_or(x, y),
        a,
        b,
        is_leaf=lambda x: x is None,
    )


# ----------------------------------------------------------------------------- summary
def _nm_of(mat: np.ndarray, patterns: tuple[tuple[int, int], ...]) -> str | None:
    for k, n in patterns:
        if mat.shape[1] % n == 0 and np.all(mat.reshape(mat.shape[0], -1, n).sum(-1) == k):
            return f"{k}:{n}"
    return None


_NM_CANDIDATES = ((1, 4), (2, 4), (3, 4), (4, 8), (6, 12), (8, 16), (12, 16))


def summary(
    params: PyTree,
    masks: PyTree | None,
    tokens: int | Mapping[str, int] | None = None,
    views: Mapping[str, tree.LayerView] | None = None,
) -> dict[str, Any]:
    """Per-layer and global sparsity, parameter and MAC counts.

    MACs (1 multiply-add each, SPEC §4): a matrix view ``(d_out, d_in)`` applied to ``T``
    tokens costs ``T * d_in * d_out * density``. A layer whose mask is a valid ``k:n``
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
        pattern = None if m is None else _nm_of(np.asarray(tree.to_matrix(np.asarray(m), v)), _NM_CANDIDATES)
        t = tokens.get(p, 1) if isinstance(tokens, Mapping) else (tokens or 1)
        dense_macs = int(t) * size
        rows.append(
            dict(path=p, shape=v.shape, params=size, kept=kept, sparsity=1 - kept / size,
                 pattern=pattern, pruned=m is not None, dense_macs=dense_macs,
                 macs=dense_macs * kept / size)
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
