"""CAST: certificate-inspired N:M projection with calibration covariances.

For each output row ``i`` and group ``g`` of ``n`` consecutive inputs (along ``d_in``):

* source tuple ``u = W_SER`` where the unstructured SER mask keeps, ``W_dense`` where it
  prunes ("free restoration": a slot in a paid group may take back its dense value);
* a candidate keep pattern ``m`` has ``k`` ones among ``n``; removed part ``r = (1 - m) * u``;
* cost ``r^T C_g r + alpha_ser * cbar * Hamming(m, M_SER)`` with ``C_g = X_g^T X_g / T`` the
  ``n x n`` block of the input covariance over ``T`` calibration rows (only the diagonal
  blocks of the ``d_in x d_in`` covariance are needed, so only they are computed);
* the argmin pattern is kept, with values ``u``.

``cbar = mean_{i,g,j} u_ij^2 C_g[j, j]`` is the average cost of removing one weight, so
``alpha_ser`` is unit-free (default 0.1: one Hamming flip is worth a tenth of an average
removal).

Evaluation: with ``z = 1 - m``, ``r^T C r = z^T Q z`` where ``Q_ab = u_a u_b C_ab``, and the
Hamming term is linear in ``z`` (``H = sum(1 - M) + sum_j z_j (2 M_j - 1)``), so the cost of
every pattern for every (row, group) is one product ``features(Q) @ phi(z)`` with
``n (n + 1) / 2`` features (diagonal and upper triangle). Patterns are scanned in chunks with
a running minimum (``lax.scan``): memory is ``rows * groups * chunk``, never
``patterns * rows * groups``. The magnitude top-k pattern of each group is always evaluated
too, so CAST's cost is never above the magnitude N:M cost even with sampled patterns.

Progress: :func:`cast` logs one line per layer at INFO level on the ``mpjax.pruning.cast``
logger (at most one every :data:`LOG_INTERVAL` seconds, plus the first and the last), which
``mpjax prune`` shows.

See `docs/method/cast.md` (CAST).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Mapping
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mpjax import tree
from mpjax.pruning import nm

PyTree = Any
#: Seconds between two progress lines of :func:`cast`.
LOG_INTERVAL = 5.0
_log = logging.getLogger(__name__)

__all__ = [
    "CastResult",
    "block_covariances",
    "calibration_cost",
    "candidate_patterns",
    "cast",
    "cast_matrix",
    "covariances",
    "layer_covariances",
]


def block_covariances(X: jax.Array, n: int, max_rows: int | None = 4096) -> jax.Array:
    """The ``n x n`` diagonal blocks of ``X^T X / T``: shape ``(d_in / n, n, n)``.

    Args:
      X: calibration inputs ``(T, d_in)`` (rows = tokens); a 3-D ``(..., d_in)`` array is
        flattened to rows. Only the first ``max_rows`` rows are used.
      n: group size (``d_in % n == 0``).
    """
    X = jnp.asarray(X).reshape(-1, jnp.shape(X)[-1]).astype(jnp.float32)
    if max_rows is not None:
        X = X[:max_rows]
    T, d_in = X.shape
    if d_in % n:
        raise ValueError(f"block_covariances: d_in={d_in} is not divisible by n={n}.")
    Xg = X.reshape(T, d_in // n, n)
    return jnp.einsum("tgi,tgj->gij", Xg, Xg) / T


def candidate_patterns(
    k: int, n: int, *, max_patterns: int = 1024, exhaustive: bool | None = None, seed: int = 0
) -> np.ndarray:
    """Keep patterns with ``k`` ones among ``n``: ``(P, n)`` bool, lexicographic order.

    All ``C(n, k)`` by default when ``C(n, k) < 5000`` (6 for 2:4, 924 for 6:12); otherwise
    ``max_patterns`` distinct random ones, unless ``exhaustive=True`` (12870 for 8:16).
    """
    total = math.comb(n, k)
    if exhaustive is None:
        exhaustive = total < 5000
    if exhaustive or total <= max_patterns:
        out = np.zeros((total, n), bool)
        for row, keep in enumerate(itertools.combinations(range(n), k)):
            out[row, list(keep)] = True
        return out
    rng = np.random.default_rng(seed)
    seen: set[bytes] = set()
    out = []
    while len(out) < max_patterns:
        m = np.zeros(n, bool)
        m[rng.choice(n, k, replace=False)] = True
        if m.tobytes() not in seen:
            seen.add(m.tobytes())
            out.append(m)
    return np.stack(out)


def _features(u: jax.Array, C: jax.Array, lin: jax.Array, n: int) -> jax.Array:
    """Per (row, group) coefficients of ``phi(z) = [z, z_a z_b (a<b)]``: ``(R, F)``."""
    iu, ju = np.triu_indices(n, 1)
    diag = u * u * jnp.diagonal(C, axis1=-2, axis2=-1)[None] + lin
    off = 2.0 * u[..., iu] * u[..., ju] * C[None, :, iu, ju]
    return jnp.concatenate([diag, off], axis=-1).reshape(-1, n + iu.size)


def _phi(z: jax.Array, n: int) -> jax.Array:
    iu, ju = np.triu_indices(n, 1)
    return jnp.concatenate([z, z[..., iu] * z[..., ju]], axis=-1)


class CastResult(NamedTuple):
    """Outcome of :func:`cast_matrix` (view layout ``(d_out, d_in)``).

    Attributes:
      weights: ``u * mask`` (SER values where SER kept, dense values restored elsewhere).
      mask: bool k:n mask.
      cost: total calibration cost ``sum r^T C_g r`` of the chosen masks.
      magnitude_cost: the same for the magnitude k:n mask (top-k ``|W_dense|``).
      objective: total CAST objective (cost + Hamming penalty).
    """

    weights: jax.Array
    mask: jax.Array
    cost: jax.Array
    magnitude_cost: jax.Array
    objective: jax.Array


def calibration_cost(W: jax.Array, mask: jax.Array, C: jax.Array) -> jax.Array:
    """``sum_{i,g} r_ig^T C_g r_ig`` with ``r = (1 - mask) * W`` (view layout)."""
    d_out, d_in = W.shape
    n = C.shape[-1]
    r = jnp.where(mask, 0.0, W.astype(jnp.float32)).reshape(d_out, d_in // n, n)
    return jnp.einsum("igj,gjk,igk->", r, C, r)


@partial(jax.jit, static_argnames=("k", "n", "chunk"))
def cast_matrix(
    W_dense: jax.Array,
    C: jax.Array,
    patterns: jax.Array,
    *,
    k: int,
    n: int,
    M_ser: jax.Array | None = None,
    W_ser: jax.Array | None = None,
    alpha_ser: float = 0.1,
    chunk: int = 256,
) -> CastResult:
    """CAST k:n projection of one ``(d_out, d_in)`` matrix.

    Args:
      W_dense: dense matrix view.
      C: ``(d_in / n, n, n)`` block covariances (:func:`block_covariances`).
      patterns: ``(P, n)`` bool candidates (:func:`candidate_patterns`).
      k, n: the pattern (static).
      M_ser: unstructured SER mask (view layout); default: all kept (no penalty pull).
      W_ser: SER weights (view layout); default ``W_dense``.
      alpha_ser: weight of the Hamming pull towards ``M_ser``.
      chunk: patterns per scan step (memory ``d_out * d_in / n * chunk`` floats).
    """
    d_out, d_in = W_dense.shape
    G = d_in // n
    Wd = W_dense.astype(jnp.float32)
    M = jnp.ones(Wd.shape, bool) if M_ser is None else M_ser
    src = Wd if W_ser is None else jnp.where(M, W_ser.astype(jnp.float32), Wd)
    u = src.reshape(d_out, G, n)
    Mg = M.reshape(d_out, G, n).astype(jnp.float32)
    cbar = jnp.mean(u * u * jnp.diagonal(C, axis1=-2, axis2=-1)[None])
    pen = alpha_ser * cbar
    feat = _features(u, C, pen * (2.0 * Mg - 1.0), n)  # (R, F)
    const = pen * jnp.sum(1.0 - Mg, axis=-1).reshape(-1)

    P = patterns.shape[0]
    chunk = min(chunk, P)
    n_chunks = -(-P // chunk)
    pad = n_chunks * chunk - P
    ids = jnp.concatenate([jnp.arange(P), jnp.zeros(pad, jnp.int32)]).astype(jnp.int32)
    pats = patterns[ids]
    Z = _phi(1.0 - pats.astype(jnp.float32), n).reshape(n_chunks, chunk, -1)
    ids = ids.reshape(n_chunks, chunk)

    def body(carry, xs):
        best, idx = carry
        Zc, idc = xs
        c = feat @ Zc.T
        j = jnp.argmin(c, axis=1)
        cm = jnp.take_along_axis(c, j[:, None], axis=1)[:, 0]
        better = cm < best
        return (jnp.where(better, cm, best), jnp.where(better, idc[j], idx)), None

    init = (jnp.full(feat.shape[0], jnp.inf, jnp.float32), jnp.zeros(feat.shape[0], jnp.int32))
    (best, idx), _ = jax.lax.scan(body, init, (Z, ids))

    # Per-group magnitude candidate: guarantees cost <= magnitude N:M even when sampling.
    m_mag = nm.nm_matrix_mask(jnp.abs(src), k, n).reshape(-1, n)
    c_mag = jnp.sum(feat * _phi(1.0 - m_mag.astype(jnp.float32), n), axis=-1)
    use_mag = c_mag < best
    m = jnp.where(use_mag[:, None], m_mag, patterns[idx]).reshape(d_out, d_in)
    obj = jnp.sum(jnp.minimum(best, c_mag) + const)
    mag_dense = nm.nm_matrix_mask(jnp.abs(Wd), k, n)
    return CastResult(
        weights=jnp.where(m, src, 0.0).astype(W_dense.dtype),
        mask=m,
        cost=calibration_cost(src, m, C),
        magnitude_cost=calibration_cost(Wd, mag_dense, C),
        objective=obj,
    )


def covariances(
    calib_inputs: Mapping[str, Any], n: int, max_rows: int | None = 4096
) -> dict[str, jax.Array]:
    """``{path: block covariances}`` from captured layer inputs ``{path: X (rows, d_in)}``."""
    return {p: block_covariances(X, n, max_rows) for p, X in calib_inputs.items()}


def layer_covariances(
    params: PyTree,
    views: Mapping[str, tree.LayerView],
    n: int,
    *,
    calib_inputs: Mapping[str, Any] | None = None,
    calib_covs: Mapping[str, Any] | None = None,
    max_rows: int | None = 4096,
) -> dict[str, jax.Array]:
    """Block covariances of the layers in ``views`` from inputs or precomputed covariances.

    Args:
      params: the parameters (calibration data must name their leaves).
      views: the layers to prune; calibration data of other layers is ignored.
      n: group size.
      calib_inputs: ``{path: X (rows, d_in)}`` (first ``max_rows`` rows used), or
      calib_covs: ``{path: (d_in/n, n, n)}`` block covariances.
      max_rows: rows of ``calib_inputs`` used per layer.

    Returns:
      ``{path: (d_in/n, n, n)}`` for the layers of ``views`` with calibration data.

    Raises:
      ValueError: a path that is not a leaf of ``params``, or a covariance of the wrong shape.
    """
    given = calib_inputs if calib_inputs is not None else (calib_covs or {})
    unknown = [p for p in given if p not in views and p not in tree.flatten(params)]
    if unknown:
        raise ValueError(f"{unknown[0]}: calibration data names a leaf params does not have.")
    if calib_inputs is not None:
        return covariances({p: x for p, x in calib_inputs.items() if p in views}, n, max_rows)
    covs = {p: c for p, c in given.items() if p in views}
    bad = [p for p, c in covs.items() if c.shape != (views[p].d_in // n, n, n)]
    if bad:
        raise ValueError(f"{bad[0]}: calib_covs shape {covs[bad[0]].shape}, expected "
                         f"{(views[bad[0]].d_in // n, n, n)}.")
    return covs


def cast(
    params: PyTree,
    k: int,
    n: int,
    covs: Mapping[str, jax.Array],
    *,
    ser_params: PyTree | None = None,
    ser_masks: PyTree | None = None,
    alpha_ser: float = 0.1,
    exhaustive: bool | None = None,
    max_patterns: int = 1024,
    seed: int = 0,
    chunk: int = 256,
    views: Mapping[str, tree.LayerView] | None = None,
    on_indivisible: str = "error",
) -> tuple[PyTree, PyTree, dict[str, CastResult]]:
    """CAST k:n projection of every layer that has a covariance in ``covs``.

    Args:
      params: dense parameters.
      k, n: the N:M pattern.
      covs: ``{path: (d_in/n, n, n)}`` from :func:`covariances`; layers without one are
        left dense (``None`` mask).
      ser_params, ser_masks: the unstructured SER (or any unstructured) result; default:
        no SER pull (``alpha_ser`` has no effect) and ``u = W_dense``.
      alpha_ser, chunk: see :func:`cast_matrix`.
      exhaustive, max_patterns, seed: see :func:`candidate_patterns`.
      on_indivisible: ``"error"`` or ``"skip"`` for ``d_in % n != 0``.

    Returns:
      ``(params, masks, {path: CastResult})``; pruned leaves carry the CAST weights.
    """
    views = tree.select(params) if views is None else views
    views = {p: v for p, v in views.items() if p in covs}
    views, _ = nm.nm_views(views, n, on_indivisible)
    pats = jnp.asarray(
        candidate_patterns(k, n, max_patterns=max_patterns, exhaustive=exhaustive, seed=seed)
    )
    dense = tree.matrices(params, views)
    sw = tree.matrices(ser_params, views) if ser_params is not None else {}
    sm = tree.flatten(ser_masks) if ser_masks is not None else {}
    new_w, new_m, results = {}, {}, {}
    started = last = time.perf_counter()
    for i, (p, v) in enumerate(views.items()):
        if i == 0 or time.perf_counter() - last >= LOG_INTERVAL:
            _log.info("CAST %d:%d: layer %d/%d %s (%d candidate patterns)", k, n, i + 1,
                      len(views), p, len(pats))  # fmt: skip
            last = time.perf_counter()
        M = tree.to_matrix(sm[p], v) if p in sm else None
        res = cast_matrix(
            dense[p],
            covs[p],
            pats,
            k=k,
            n=n,
            M_ser=M,
            W_ser=sw.get(p),
            alpha_ser=alpha_ser,
            chunk=chunk,
        )
        new_w[p], new_m[p], results[p] = res.weights, tree.from_matrix(res.mask, v), res
    _log.info("CAST %d:%d: %d layers in %.1f s", k, n, len(views), time.perf_counter() - started)
    return tree.replace_matrices(params, new_w, views), tree.unflatten_like(params, new_m), results
