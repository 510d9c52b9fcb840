"""Spectral transforms of weight matrices: bulk removal, low-rank truncation, factorisation.

Conventions (`docs/method/lowrank.md`): every matrix is the ``(d_out, d_in)`` view, ``W = U diag(s) V^T``
with ``s`` sorted descending, ``p = min(d_out, d_in)``. The MP bulk edge ``sigma_plus`` is on
the singular-value scale; *spikes* are ``s_k > sigma_plus``, the *bulk* is the rest.

SVDs run in float32 (or float64 if the input is float64) and the result is cast back to the
input dtype, so a bfloat16 matrix stays bfloat16.

These transforms change the spectrum, not the sparsity pattern: as pruners they return no
mask (``None`` leaves); see :func:`lowrank`.

References:
  [P25] Berlyand et al., "Pruning DNNs via a Combination of the Marchenko-Pastur
  Distribution and Regularization", arXiv 2503.01922, Algorithm 1 and §3.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mpjax import tree

PyTree = Any

__all__ = [
    "Factors",
    "LowRankInfo",
    "factorization_saves",
    "factorize",
    "lowrank",
    "rank_for_density",
    "spectral_truncate",
    "truncate_to_rank",
    "truncation_rank",
]


def _svd_dtype(dtype: Any) -> Any:
    return jnp.float64 if dtype == jnp.float64 else jnp.float32


def truncation_rank(s: jax.Array, edge: Any, keep_bulk_fraction: Any) -> jax.Array:
    """Number of singular values kept by :func:`spectral_truncate`.

    ``rank = n_spikes + floor(f * n_bulk)`` with ``n_spikes = #{s_k > edge}``,
    ``n_bulk = p - n_spikes`` and ``f = keep_bulk_fraction`` clipped to ``[0, 1]``.

    Args:
      s: singular values, sorted descending, shape ``(p,)``.
      edge: bulk edge ``sigma_plus`` (singular-value scale); may be traced.
      keep_bulk_fraction: share ``f`` of the bulk singular values to keep; may be traced.

    Returns:
      An int32 scalar (a traced value under ``jit``).
    """
    s = jnp.asarray(s)
    n_spikes = jnp.sum(s > edge).astype(jnp.int32)
    n_bulk = s.shape[0] - n_spikes
    f = jnp.clip(jnp.asarray(keep_bulk_fraction, jnp.float32), 0.0, 1.0)
    # A small tolerance so that f = k / n_bulk exactly keeps k values despite rounding.
    return n_spikes + jnp.floor(f * n_bulk + 1e-6).astype(jnp.int32)


@jax.jit
def spectral_truncate(W: jax.Array, edge: Any, keep_bulk_fraction: Any) -> jax.Array:
    """Remove the smallest bulk singular values of ``W`` (Algorithm 1 of [P25]).

    ``W' = sum_{k < r} s_k u_k v_k^T`` with ``r = truncation_rank(s, edge, f)``: all spikes
    (``s_k > edge``) are kept, plus the largest fraction ``f`` of the bulk singular values.
    ``f = 1`` returns ``W`` (up to SVD round-off), ``f = 0`` keeps only the spikes.

    Jit-friendly: ``edge`` and ``keep_bulk_fraction`` may be traced (the rank is applied as
    a mask on the singular values, the output shape is always ``W.shape``).

    Args:
      W: the ``(d_out, d_in)`` matrix view.
      edge: ``sigma_plus`` of the MP bulk, singular-value scale (e.g. ``mp.fit(...).edge``).
      keep_bulk_fraction: ``f`` in ``[0, 1]`` (Algorithm 1: ``max(0, 1 - epoch/200)``).

    Returns:
      The truncated matrix, same shape and dtype as ``W``.

    Examples:
      >>> import jax.numpy as jnp
      >>> W = jnp.diag(jnp.array([5.0, 1.0, 0.5]))
      >>> spectral_truncate(W, edge=2.0, keep_bulk_fraction=0.5).round(4).tolist()
      [[5.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """
    W = jnp.asarray(W)
    if W.ndim != 2:
        raise ValueError(f"spectral_truncate: W must be a 2-D (d_out, d_in) matrix, got {W.shape}.")
    Wf = W.astype(_svd_dtype(W.dtype))
    u, s, vt = jnp.linalg.svd(Wf, full_matrices=False)
    r = truncation_rank(s, edge, keep_bulk_fraction)
    s_kept = jnp.where(jnp.arange(s.shape[0]) < r, s, 0.0)
    return ((u * s_kept) @ vt).astype(W.dtype)


class Factors(NamedTuple):
    """Two-layer factorisation ``W ~= W2 @ W1``.

    Attributes:
      W1: ``(rank, d_in)`` = ``diag(sqrt s) V^T`` (the first layer, applied to the input).
      W2: ``(d_out, rank)`` = ``U diag(sqrt s)``.
    """

    W1: jax.Array
    W2: jax.Array


@partial(jax.jit, static_argnames=("rank",))
def factorize(W: jax.Array, rank: int) -> Factors:
    """Factor ``W`` into two layers ``W2 @ W1`` of inner dimension ``rank`` ([P25] Alg. 1).

    ``W1 = diag(sqrt s_r) V_r^T`` and ``W2 = U_r diag(sqrt s_r)`` with the ``rank`` largest
    singular triplets, so ``W2 @ W1`` is the best rank-``rank`` approximation of ``W``
    (exact if ``rank >= rank(W)``). Worth it when ``rank * (d_out + d_in) < d_out * d_in``
    (see :func:`factorization_saves`).

    Args:
      W: ``(d_out, d_in)`` matrix view.
      rank: static int in ``[1, min(d_out, d_in)]``.

    Returns:
      :class:`Factors` ``(W1, W2)`` in ``W``'s dtype.

    Raises:
      ValueError: if ``rank`` is out of range or ``W`` is not 2-D.
    """
    W = jnp.asarray(W)
    if W.ndim != 2:
        raise ValueError(f"factorize: W must be a 2-D (d_out, d_in) matrix, got {W.shape}.")
    rank = int(rank)
    if not 1 <= rank <= min(W.shape):
        raise ValueError(f"factorize: rank={rank} must be in [1, {min(W.shape)}] for W {W.shape}.")
    u, s, vt = jnp.linalg.svd(W.astype(_svd_dtype(W.dtype)), full_matrices=False)
    root = jnp.sqrt(s[:rank])
    W1 = (root[:, None] * vt[:rank]).astype(W.dtype)
    W2 = (u[:, :rank] * root[None, :]).astype(W.dtype)
    return Factors(W1=W1, W2=W2)


def factorization_saves(shape: tuple[int, int], rank: int) -> bool:
    """True when ``rank * (d_out + d_in) < d_out * d_in`` (two factors are smaller than W)."""
    d_out, d_in = shape
    return int(rank) * (d_out + d_in) < d_out * d_in


def rank_for_density(shape: tuple[int, int], density: float) -> int:
    """Largest rank whose factor pair holds at most ``density * d_out * d_in`` parameters.

    ``r = floor(density * d_out * d_in / (d_out + d_in))``, clipped to ``[1, p]``. This is
    how ``prune(method="lowrank", sparsity=S)`` maps a sparsity to a rank (``density = 1-S``).
    """
    d_out, d_in = shape
    r = int(np.floor(density * d_out * d_in / (d_out + d_in) + 1e-9))
    return max(1, min(r, min(d_out, d_in)))


@partial(jax.jit, static_argnames=("rank",))
def truncate_to_rank(W: jax.Array, rank: int) -> jax.Array:
    """Best rank-``rank`` approximation of ``W`` (Eckart-Young), same shape and dtype."""
    f = factorize(W, rank)
    return (f.W2.astype(jnp.float32) @ f.W1.astype(jnp.float32)).astype(jnp.asarray(W).dtype)


class LowRankInfo(NamedTuple):
    """Per-layer outcome of :func:`lowrank`.

    Attributes:
      rank: ``{path: kept rank}``.
      edge: ``{path: sigma_plus used}`` (``None`` when a rank target was used).
      factor_params: ``{path: rank * (d_out + d_in)}``, parameters if factorised.
      dense_params: ``{path: d_out * d_in}``.
    """

    rank: dict[str, int]
    edge: dict[str, float | None]
    factor_params: dict[str, int]
    dense_params: dict[str, int]


def lowrank(
    params: PyTree,
    keep_bulk_fraction: float | None = None,
    *,
    edges: Mapping[str, float] | None = None,
    density: float | None = None,
    views: Mapping[str, tree.LayerView] | None = None,
    fit_kwargs: Mapping[str, Any] | None = None,
) -> tuple[PyTree, LowRankInfo]:
    """Pytree-level low-rank truncation of every selected weight matrix.

    Two modes (exactly one of ``keep_bulk_fraction`` / ``density``):

    * spectral (Algorithm 1 of [P25]): keep all spikes above the MP edge plus the largest
      fraction ``keep_bulk_fraction`` of the bulk. ``edges[path]`` is used if given,
      otherwise ``mp.fit(s, shape, **fit_kwargs).edge`` (BEMA by default).
    * parameter budget: keep rank ``rank_for_density(shape, density)``, i.e. the factor pair
      ``W2 W1`` holds at most ``density * d_out * d_in`` parameters.

    The tree structure and dtypes are kept (each matrix stays dense with its shape; use
    :func:`factorize` with ``info.rank`` to get the two smaller layers). There is no mask:
    low-rank truncation is not a sparsifying pruner.

    Args:
      params: parameter pytree.
      keep_bulk_fraction: share ``f`` of the bulk singular values to keep (spectral mode).
      edges: ``{path: sigma_plus}`` overrides of the fitted edges (spectral mode).
      density: the factored parameter share to meet (parameter-budget mode).
      views: layers to truncate (default ``tree.select(params)``).
      fit_kwargs: options of ``mpjax.mp.fit`` when an edge is fitted.

    Returns:
      ``(params, info)`` with :class:`LowRankInfo`.
    """
    if (keep_bulk_fraction is None) == (density is None):
        raise ValueError("lowrank: pass exactly one of keep_bulk_fraction= or density=.")
    views = tree.select(params) if views is None else views
    mats = tree.matrices(params, views)
    new, info = {}, LowRankInfo({}, {}, {}, {})
    for path, W in mats.items():
        shape = views[path].shape
        if density is not None:
            r, edge = rank_for_density(shape, density), None
            new[path] = truncate_to_rank(W, r)
        else:
            s = np.linalg.svd(np.asarray(W, np.float32), compute_uv=False)
            if edges is not None and path in edges:
                edge = float(edges[path])
            else:
                from mpjax import mp  # local import: mp is optional for the density mode

                edge = float(mp.fit(s, shape, **dict(fit_kwargs or {})).edge)
            r = int(truncation_rank(jnp.asarray(s), edge, keep_bulk_fraction))
            new[path] = spectral_truncate(W, edge, keep_bulk_fraction)
        info.rank[path], info.edge[path] = r, edge
        info.factor_params[path] = r * (shape[0] + shape[1])
        info.dense_params[path] = shape[0] * shape[1]
    return tree.replace_matrices(params, new, views), info
