"""AlphaPruning-style layer budgets, and the uniform / SEB / alpha budgets by name.

Alpha budgets (:func:`alpha_budget`) give each layer its own sparsity from the
Hill exponent ``alpha_l`` of its eigenvalue spectrum: with
``a_l = (alpha_l - min alpha) / (max alpha - min alpha)``,

    s_l = S - eps + 2 eps a_l + c,     clipped to [0, 0.99],

``eps = 0.2``, and one shift ``c`` (found by bisection, so the clipping is accounted for)
that makes the parameter-weighted mean ``sum_l n_l s_l / sum_l n_l`` equal ``S``. Layers
with a larger ``alpha`` (a lighter tail, closer to a random matrix) are pruned harder.
:func:`layer_budget` returns the uniform, SEB or alpha budget by name.

See `docs/method/posttrain.md` (alpha budgets) and `docs/method/budgets.md` (SEB).

References:
  Lu et al., "AlphaPruning: Using Heavy-Tailed Self Regularization Theory for Improved
  Layer-wise Pruning of Large Language Models", NeurIPS 2024.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mpjax import tree
from mpjax.pruning.budgets import budget_of, layer_signals, seb_masks, seb_weights
from mpjax.pruning.masks import check_sparsity

PyTree = Any

__all__ = ["BUDGET_KINDS", "alpha_budget", "alpha_sparsities", "layer_budget"]


#: The layer budgets :func:`layer_budget` knows.
BUDGET_KINDS = ("uniform", "seb", "alpha")


def alpha_sparsities(
    alphas: Mapping[str, float | None],
    sizes: Mapping[str, int],
    sparsity: float,
    *,
    eps: float = 0.2,
    max_sparsity: float = 0.99,
) -> dict[str, float]:
    """Per-layer sparsities ``clip(S - eps + 2 eps a_l + c, 0, max_sparsity)``, mean ``S``.

    Args:
      alphas: ``{path: alpha_l}``; a missing exponent (``None``/NaN) gets ``a_l = 1/2``.
      sizes: ``{path: n_l}`` parameter counts (the weights of the mean).
      sparsity: the target ``S``, in ``[0, max_sparsity]``.
      eps: half the spread of the unshifted sparsities.
      max_sparsity: upper clip.

    Returns:
      ``{path: s_l}`` whose ``n_l``-weighted mean is ``S`` (to 1e-12); all ``S`` when every
      ``alpha`` is equal or missing.

    Raises:
      ValueError: ``S`` outside ``[0, max_sparsity]`` or ``eps < 0``.

    Examples:
      >>> out = alpha_sparsities({"a": 2.0, "b": 4.0}, {"a": 1, "b": 1}, 0.5)
      >>> round(out["a"], 6), round(out["b"], 6)
      (0.3, 0.7)
    """
    if not 0.0 <= sparsity <= max_sparsity or eps < 0:
        raise ValueError(
            f"sparsity={sparsity}, eps={eps}: need 0 <= sparsity <= {max_sparsity} and eps >= 0."
        )
    x = np.array([np.nan if v is None else v for v in alphas.values()], np.float64)
    ok = np.isfinite(x)
    span = np.ptp(x[ok]) if ok.any() else 0.0
    a = (
        np.where(ok, (x - np.nanmin(np.where(ok, x, np.inf))) / span, 0.5)
        if span > 0
        else np.full(x.shape, 0.5)
    )
    raw = sparsity - eps + 2.0 * eps * a
    n = np.array([sizes[p] for p in alphas], np.float64)

    def mean(c: float) -> float:
        return float(np.sum(n * np.clip(raw + c, 0.0, max_sparsity)) / np.sum(n))

    lo, hi = -1.0 - eps, 1.0 + eps  # mean(lo) = 0 <= S <= max_sparsity = mean(hi)
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if mean(mid) < sparsity else (lo, mid)
    out = np.clip(raw + 0.5 * (lo + hi), 0.0, max_sparsity)
    return dict(zip(alphas, out.tolist(), strict=True))


def alpha_budget(
    params: PyTree,
    sparsity: float,
    *,
    views: Mapping[str, tree.LayerView] | None = None,
    eps: float = 0.2,
    hill_k: int | None = None,
    alphas: Mapping[str, float | None] | None = None,
) -> PyTree:
    """The AlphaPruning-style budget pytree (:func:`alpha_sparsities` on Hill exponents).

    Args:
      params: parameter pytree.
      sparsity: the global target ``S``.
      views: layers to budget (default ``tree.select(params)``).
      eps: spread, 0.2.
      hill_k: tail size of the Hill estimator; default half the eigenvalues of each layer.
      alphas: precomputed ``{path: alpha_l}`` (skips the spectra).

    Returns:
      A budget pytree (``s_l`` at the layers of ``views``, ``None`` elsewhere).
    """
    from mpjax import mp  # local import: spectra are only needed here

    views = tree.select(params) if views is None else views
    if alphas is None:
        svals = mp.singular_values(params, views)
        alphas = {
            p: mp.hill_alpha(np.asarray(s), k=hill_k or max(1, len(s) // 2))
            for p, s in svals.items()
        }
    sizes = {p: v.d_out * v.d_in for p, v in views.items()}
    per = alpha_sparsities({p: alphas[p] for p in views}, sizes, sparsity, eps=eps)
    return tree.unflatten_like(params, per)


def layer_budget(
    params: PyTree,
    kind: str,
    sparsity: float,
    *,
    views: Mapping[str, tree.LayerView] | None = None,
    signals: Mapping[str, Mapping[str, float]] | None = None,
    alphas: Mapping[str, float | None] | None = None,
    eps: float = 0.2,
) -> PyTree:
    """A per-layer budget pytree by name: ``"uniform"``, ``"seb"`` or ``"alpha"``.

    ``"uniform"``: ``S`` everywhere. ``"seb"``: the per-layer sparsities that SEB's global
    criterion ``|W_ij| / w_l`` realises at ``S`` (:func:`seb_masks`, :func:`budget_of`).
    ``"alpha"``: :func:`alpha_budget`.

    Args:
      params: parameter pytree.
      kind: one of :data:`BUDGET_KINDS`.
      sparsity: the global target ``S``.
      views: layers to budget (default ``tree.select(params)``).
      signals: precomputed :func:`layer_signals` (SEB).
      alphas: precomputed Hill exponents (alpha).
      eps: the alpha budget's spread.

    Returns:
      A budget pytree.

    Raises:
      ValueError: an unknown ``kind`` or a sparsity outside ``[0, 1)``.
    """
    check_sparsity(sparsity)
    views = tree.select(params) if views is None else views
    if kind == "uniform":
        return tree.unflatten_like(params, dict.fromkeys(views, float(sparsity)))
    if kind == "seb":
        signals = signals or layer_signals(params, views)
        m = seb_masks(params, sparsity, seb_weights(signals, sparsity), views)
        return budget_of(m)
    if kind == "alpha":
        return alpha_budget(params, sparsity, views=views, eps=eps, alphas=alphas)
    raise ValueError(f"budget kind={kind!r}; expected one of {BUDGET_KINDS}.")
