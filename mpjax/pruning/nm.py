"""N:M masks: keep ``k`` of every ``n`` consecutive inputs, build them, check them, detect them.

An N:M mask keeps ``k`` entries of every ``n`` consecutive entries along ``d_in`` of the
``(d_out, d_in)`` matrix view, the reduction axis that sparse tensor cores need. Masks follow
the contract of :mod:`mpjax.pruning.masks` (bool leaves in leaf layout, ``None`` for leaves
left alone). The pattern itself is :class:`mpjax.arch.NMPattern`
(``mpjax.arch.parse_pattern("2:4")``). See `docs/method/cast.md` (N:M patterns).
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
from mpjax.arch import NMPattern

PyTree = Any

__all__ = [
    "NM_CANDIDATES",
    "detect_pattern",
    "nm_masks",
    "nm_matrix_mask",
    "nm_skip_reasons",
    "nm_views",
    "validate_nm",
]

#: The patterns :func:`detect_pattern` recognises, in the order they are tried.
NM_CANDIDATES = tuple(NMPattern(k, n) for k, n in
                      ((1, 4), (2, 4), (3, 4), (4, 8), (6, 12), (8, 16), (12, 16)))


@partial(jax.jit, static_argnames=("k", "n"))
def nm_matrix_mask(score: jax.Array, k: int, n: int) -> jax.Array:
    """Keep the ``k`` highest scores of every ``n`` consecutive entries along axis 1.

    Args:
      score: a ``(d_out, d_in)`` matrix view with ``d_in % n == 0``.
      k, n: the pattern (static).

    Returns:
      A bool ``(d_out, d_in)`` mask; among equal scores the lower column index is kept.

    Examples:
      >>> nm_matrix_mask(jnp.array([[1.0, 4.0, 3.0, 2.0]]), 2, 4).tolist()
      [[False, True, True, False]]
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
    """``{path: reason}`` for every layer whose ``d_in`` is not a multiple of ``n``.

    Args:
      views: ``{path: LayerView}``.
      n: group size.

    Returns:
      ``{path: "d_in=... is not divisible by n=..."}`` for the layers an N:M mask cannot cover.
    """
    return {
        p: f"d_in={v.d_in} is not divisible by n={n}"
        for p, v in views.items()
        if v.d_in % n
    }


def nm_views(
    views: Mapping[str, tree.LayerView], n: int, on_indivisible: str = "error"
) -> tuple[dict[str, tree.LayerView], dict[str, str]]:
    """Split ``views`` into N:M-eligible layers and ``{path: reason}`` for skipped ones.

    Args:
      views: ``{path: LayerView}`` of the layers to prune.
      n: group size.
      on_indivisible: ``"error"`` or ``"skip"`` (with a warning) for ``d_in % n != 0``.

    Returns:
      ``(eligible views, {path: reason})``.

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

    Raises:
      ValueError: ``k, n`` not a pattern, or a layer's ``d_in`` not divisible by ``n``.
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

    Raises:
      ValueError: ``raise_on_error`` and some mask is not a valid ``k:n`` mask.
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


def detect_pattern(
    mask: np.ndarray, candidates: tuple[NMPattern, ...] = NM_CANDIDATES
) -> NMPattern | None:
    """The first candidate pattern a ``(d_out, d_in)`` mask view follows exactly, or ``None``.

    Args:
      mask: a bool ``(d_out, d_in)`` mask view.
      candidates: the patterns to try, in order.

    Returns:
      The :class:`mpjax.arch.NMPattern` whose every group keeps exactly ``k`` of ``n``.

    Examples:
      >>> detect_pattern(np.array([[True, False, True, False]]))
      NMPattern(k=2, n=4)
      >>> detect_pattern(np.ones((2, 4), bool)) is None
      True
    """
    mat = np.asarray(mask)
    for p in candidates:
        if mat.shape[1] % p.n == 0 and np.all(mat.reshape(mat.shape[0], -1, p.n).sum(-1) == p.k):
            return p
    return None
