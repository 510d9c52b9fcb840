"""Algorithm 1 of [P25]: MP pruning during training, with sparsification and the split.

Every ``prune_every`` epochs, each layer with a good MP fit keeps its spikes plus the largest
fraction ``f(epoch) = max(0, 1 - epoch / horizon)`` of its bulk singular values; the kept
singular vectors are sparsified (small entries zeroed, more for deep-bulk components) and the
layer is written as two factors ``W1 = diag(sqrt s) V^T``, ``W2 = U diag(sqrt s)``. When the
two factors hold fewer parameters than ``W`` the layer is split (and never pruned again);
otherwise it is recomposed as ``W2 W1``. See `docs/method/l2-theory.md`.

References:
  [P25] Berlyand et al., arXiv 2503.01922, Algorithm 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from mpjax.dynamics.config import DynamicsConfig
from mpjax.dynamics.record import MIN_PRUNE_P, Decomp, bema_fit, decompose, member_views
from mpjax.pruning import factorization_saves, truncation_rank


def keep_fraction(epoch: int, horizon: float) -> float:
    """Algorithm 1's share of the bulk kept at ``epoch``: ``f = max(0, 1 - epoch / horizon)``."""
    return max(0.0, 1.0 - epoch / horizon)


class PruneStep(NamedTuple):
    """The result of one Algorithm 1 step on one layer.

    Attributes:
      W: the new ``(d_out, d_in)`` matrix (float32), ``None`` when the layer is left alone.
      rank: the kept rank ``r`` (``p`` when left alone).
      split: whether the layer is split into two factors (it saves parameters).
      factors: ``(W1 (r, d_in), W2 (d_out, r))`` with ``W = W2 @ W1`` when split, else ``None``.
      zeroed: singular-vector entries set to 0 by the sparsification.
    """

    W: np.ndarray | None
    rank: int
    split: bool
    factors: tuple[np.ndarray, np.ndarray] | None
    zeroed: int


def sparsify_vectors(
    U: np.ndarray, s: np.ndarray, Vt: np.ndarray, edge: float, theta: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Zero small singular-vector entries: ``|u_ik|, |v_kj| < theta max(1/750, b_k)``.

    ``b_k = (1 - s_k / edge)^30`` for a bulk component (``s_k < edge``) and 0 for a spike, so
    every kept vector loses its entries below ``theta / 750`` and the deep-bulk ones (small
    ``s_k``) lose up to ``theta``.

    Args:
      U: left vectors ``(d_out, r)``; s: their singular values ``(r,)``; Vt: right vectors
        as rows ``(r, d_in)``; edge: the bulk edge ``sigma_plus``; theta: the threshold scale.

    Returns:
      ``(U', Vt', zeroed)``: copies with the small entries zeroed, and how many were.
    """
    bulk = np.where(s < edge, (1.0 - np.clip(s / edge, 0.0, 1.0)) ** 30, 0.0)
    t = theta * np.maximum(1.0 / 750.0, bulk)
    keep_u, keep_v = np.abs(U) >= t[None, :], np.abs(Vt) >= t[:, None]
    zeroed = int(np.sum(~keep_u) + np.sum(~keep_v))
    return np.where(keep_u, U, 0.0), np.where(keep_v, Vt, 0.0), zeroed


def split_factors(U: np.ndarray, s: np.ndarray, Vt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Algorithm 1's two factors ``W1 = diag(sqrt s) Vt`` (r, d_in), ``W2 = U diag(sqrt s)``."""
    root = np.sqrt(np.maximum(s, 0.0))
    return root[:, None] * Vt, U * root[None, :]


def algorithm1_step(
    dec: Decomp,
    epoch: int,
    horizon: float,
    fit_error_max: float,
    theta: float = 0.0,
    split: bool = False,
    fit_fn: Callable = bema_fit,
) -> PruneStep:
    """One Algorithm 1 step on one layer: keep, sparsify, recompose or split.

    Keeps the spikes plus the largest ``f(epoch) = max(0, 1 - epoch/horizon)`` of the bulk
    singular values (rank ``r``), zeroes small entries of the kept singular vectors
    (:func:`sparsify_vectors`, when ``theta > 0``), and forms the factors
    ``W1 = diag(sqrt s) V^T``, ``W2 = U diag(sqrt s)`` (:func:`split_factors`). With ``split``
    and ``r (d_out + d_in) < d_out d_in`` the layer is split; otherwise it is recomposed as
    ``W2 W1``. A layer is left alone when ``p < MIN_PRUNE_P`` or its MP fit error is not
    below ``fit_error_max``.
    """
    p = dec.s.shape[0]
    alone = PruneStep(None, p, False, None, 0)
    if p < MIN_PRUNE_P:
        return alone
    fit = fit_fn(dec.s, dec.shape)
    if not np.isfinite(fit.fit_error) or fit.fit_error >= fit_error_max:
        return alone
    r = int(truncation_rank(jnp.asarray(dec.s), float(fit.edge), keep_fraction(epoch, horizon)))
    if r >= p and theta == 0:
        return alone
    U, s, Vt = dec.U[:, :r], dec.s[:r], dec.Vt[:r]
    zeroed = 0
    if theta > 0:
        U, Vt, zeroed = sparsify_vectors(U, s, Vt, float(fit.edge), theta)
    W1, W2 = split_factors(U, s, Vt)
    do_split = bool(split and factorization_saves(dec.shape, r))
    W = (W2 @ W1).astype(np.float32)
    return PruneStep(W, r, do_split, (W1, W2) if do_split else None, zeroed)


def mp_prune_matrix(
    dec: Decomp, epoch: int, horizon: float, fit_error_max: float, fit_fn: Callable = bema_fit
) -> tuple[np.ndarray | None, int]:
    """Keep-rank truncation only (no sparsification, no split): ``(W_new, rank)``.

    The earlier form of the step, :func:`algorithm1_step` with ``theta = 0``; ``W_new`` is
    ``None`` when the layer is left alone.
    """
    step = algorithm1_step(dec, epoch, horizon, fit_error_max, fit_fn=fit_fn)
    return step.W, step.rank


def mp_prune_members(
    config: DynamicsConfig,
    params: Any,
    epoch: int,
    ranks: np.ndarray,
    backend: str = "numpy",
    split: np.ndarray | None = None,
    zeroed: np.ndarray | None = None,
) -> Any:
    """Algorithm 1 on every ``mp=True`` member at ``epoch``; updates ``ranks[M, L]`` in place.

    ``split[M, L]`` (bool, updated in place) marks layers split into two factors: they are
    never pruned again, and :func:`hold_split_ranks` keeps them at their rank. ``zeroed[M, L]``
    receives the sparsified entry counts of this step.
    """
    mp_members = [m for m, (arm, _) in enumerate(config.members) if arm.mp]
    if not mp_members or epoch % config.prune_every:
        return params
    split = np.zeros(ranks.shape, bool) if split is None else split
    params = dict(params)
    for i in range(config.n_layers):
        W = member_views(params, i)
        kernel = np.array(params[f"Dense_{i}"]["kernel"])
        for m in mp_members:
            if split[m, i]:
                continue
            step = algorithm1_step(
                decompose(W[m], backend),
                epoch,
                config.prune_horizon,
                config.fit_error_max,
                config.sparsify_theta,
                config.split,
            )
            if step.W is not None:
                kernel[m] = step.W.T
                ranks[m, i], split[m, i] = step.rank, step.split
                if zeroed is not None:
                    zeroed[m, i] = step.zeroed
        params[f"Dense_{i}"] = {**params[f"Dense_{i}"], "kernel": jnp.asarray(kernel)}
    return params


def hold_split_ranks(
    params: Any, ranks: np.ndarray, split: np.ndarray, backend: str = "numpy"
) -> Any:
    """Project every split layer back to its rank (a split layer is a product of rank-r factors).

    mpjax trains the product ``W = W2 W1`` of a split layer rather than the two factors (so
    members keep their shapes and stay batched); after each epoch the product is truncated
    back to rank ``ranks[m, i]``, which keeps the function class of the split layer.
    """
    if not np.any(split):
        return params
    params = dict(params)
    for i in range(split.shape[1]):
        if not np.any(split[:, i]):
            continue
        W, kernel = member_views(params, i), np.array(params[f"Dense_{i}"]["kernel"])
        for m in np.flatnonzero(split[:, i]):
            kernel[m] = decompose(W[m], backend).truncate(int(ranks[m, i])).T.astype(np.float32)
        params[f"Dense_{i}"] = {**params[f"Dense_{i}"], "kernel": jnp.asarray(kernel)}
    return params
