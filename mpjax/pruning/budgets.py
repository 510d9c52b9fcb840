"""Per-layer sparsity budgets: spectral edge budgeting (SEB) and the cyclic procedure's rule.

A **budget** is a pytree with params' structure holding a float sparsity in ``[0, 1)`` at
each budgeted weight leaf and ``None`` elsewhere. Any pruner can consume one;
:func:`masks_from_budget` turns it into per-layer magnitude masks.

SEB (P26) instead weights a *global* magnitude criterion per layer: it removes the globally
smallest ``|W_ij| / w_l`` with

    z_l = (x_l - mean_l x) / std_l x           (x = sigma_plus, or alpha_Hill at s <= 0.20)
    d(s) = max(0, 1 - s / s_d)
    w_l(s) = max(0.1, 1 + beta_type * d(s) * z_l)

so a layer with a high MP edge (more noise-like) is pruned harder.

AlphaPruning-style budgets and :func:`~mpjax.pruning.alpha.layer_budget` (uniform, SEB or
alpha budgets by name) live in :mod:`mpjax.pruning.alpha`.

See `docs/method/budgets.md` (SEB, layer budgets, the cyclic singular-value procedure).

References:
  [P25] arXiv 2503.01922 §3 (layer budget); [P26] arXiv 2606.02608 (SEB).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from mpjax import tree
from mpjax.pruning.masks import check_sparsity, magnitude_masks, topk_mask

PyTree = Any

__all__ = [
    "LAYER_TYPES",
    "SEBRegime",
    "budget_of",
    "cycle_budget",
    "cycle_rate",
    "layer_signals",
    "layer_type",
    "masks_from_budget",
    "seb_masks",
    "seb_regime",
    "seb_weights",
    "zscore",
]

LAYER_TYPES = ("attention", "mlp", "other")
_ATTN_HINTS = ("attention", "attn", "query", "key", "value", "qkv", "q_proj", "k_proj",
               "v_proj", "o_proj", "out_proj")
_MLP_HINTS = ("mlp", "ffn", "fc1", "fc2", "intermediate", "feed_forward", "feedforward")


def layer_type(path: str) -> str:
    """``"attention"``, ``"mlp"`` or ``"other"`` from the names along ``path``.

    Examples:
      >>> layer_type("Transformer/encoderblock_0/MlpBlock_0/Dense_1/kernel")
      'mlp'
      >>> layer_type("blocks.3.attn.qkv.weight")
      'attention'
    """
    parts = path.lower().replace(".", "/").split("/")
    if any(h in part for part in parts for h in _ATTN_HINTS):
        return "attention"
    if any(h in part for part in parts for h in _MLP_HINTS):
        return "mlp"
    return "other"


# ----------------------------------------------------------------------------- SEB
class SEBRegime(NamedTuple):
    """SEB settings at one sparsity.

    Attributes:
      signal: ``"hill"`` (alpha_Hill), ``"edge"`` (sigma_plus) or ``"none"`` (plain magnitude).
      beta: ``{layer type: beta_type}``.
      s_d: the sparsity at which the reweighting fades out.
    """

    signal: str
    beta: dict[str, float]
    s_d: float


def seb_regime(sparsity: float, plain_below: float | None = None) -> SEBRegime:
    """The SEB regime for a target sparsity (`docs/method/budgets.md`, SEB).

    ``s <= 0.20``: Hill signal, beta 0.5, s_d 0.3; ``0.20-0.40``: edge, 1.0, 0.5;
    ``0.40-0.55``: edge, 1.25, 0.7; ``> 0.55``: edge, attention 1.0 / MLP 2.0 / other 1.5,
    s_d 0.85. ``plain_below=0.30`` gives the papers' final protocol (plain magnitude below).
    """
    if plain_below is not None and sparsity < plain_below:
        return SEBRegime("none", dict.fromkeys(LAYER_TYPES, 0.0), 1.0)
    if sparsity <= 0.20:
        return SEBRegime("hill", dict.fromkeys(LAYER_TYPES, 0.5), 0.3)
    if sparsity <= 0.40:
        return SEBRegime("edge", dict.fromkeys(LAYER_TYPES, 1.0), 0.5)
    if sparsity <= 0.55:
        return SEBRegime("edge", dict.fromkeys(LAYER_TYPES, 1.25), 0.7)
    return SEBRegime("edge", {"attention": 1.0, "mlp": 2.0, "other": 1.5}, 0.85)


def zscore(values: Mapping[str, float]) -> dict[str, float]:
    """Standardise across layers: ``(x - mean) / std`` (population std; 0 if std is 0).

    Missing signals (``None``/NaN, e.g. a Hill exponent of a layer too small for ``k``) get
    ``z = 0`` and are left out of the mean and std.
    """
    x = np.array([np.nan if v is None else v for v in values.values()], np.float64)
    ok = np.isfinite(x)
    if not ok.any():
        return dict.fromkeys(values, 0.0)
    mean, sd = x[ok].mean(), x[ok].std()
    z = (x - mean) / sd if sd > 1e-12 * max(1.0, abs(mean)) else np.zeros_like(x)
    return dict(zip(values, np.where(ok, z, 0.0).tolist(), strict=True))


def layer_signals(
    params: PyTree,
    views: Mapping[str, tree.LayerView] | None = None,
    *,
    hill_k: int = 20,
    fit_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, float]]:
    """Per-layer spectral signals on the dense weights, computed once.

    Returns:
      ``{path: {"edge": sigma_plus, "fit_error": gamma, "bulk_fraction": mu,
      "hill": alpha_Hill}}`` from ``mp.fit`` (BEMA by default) and ``mp.hill_alpha``.
    """
    from mpjax import mp  # local import: the MP fits are only needed here

    views = tree.select(params) if views is None else views
    svals = mp.singular_values(params, views)
    out = {}
    for p, s in svals.items():
        fit = mp.fit(np.asarray(s), views[p].shape, **dict(fit_kwargs or {}))
        hill = mp.hill_alpha(np.asarray(s), k=hill_k)
        out[p] = dict(edge=float(fit.edge), fit_error=float(fit.fit_error),
                      bulk_fraction=float(fit.bulk_fraction),
                      hill=float("nan") if hill is None else float(hill))
    return out


def seb_weights(
    signals: Mapping[str, Mapping[str, float]],
    sparsity: float,
    *,
    regime: SEBRegime | None = None,
    plain_below: float | None = None,
) -> dict[str, float]:
    """SEB layer weights ``w_l(s) = max(0.1, 1 + beta_type(l) d(s) z_l)``.

    Args:
      signals: ``{path: {"edge": ..., "hill": ...}}`` (see :func:`layer_signals`).
      sparsity: the global target ``s``.
      regime: override :func:`seb_regime`.
      plain_below: passed to :func:`seb_regime`.

    Returns:
      ``{path: w_l}`` (all 1.0 in the ``"none"`` regime).
    """
    check_sparsity(sparsity)
    regime = regime or seb_regime(sparsity, plain_below)
    if regime.signal == "none":
        return dict.fromkeys(signals, 1.0)
    z = zscore({p: sig[regime.signal] for p, sig in signals.items()})
    d = max(0.0, 1.0 - sparsity / regime.s_d)
    return {p: max(0.1, 1.0 + regime.beta[layer_type(p)] * d * z[p]) for p in signals}


def seb_masks(
    params: PyTree,
    sparsity: Any,
    weights: Mapping[str, Any],
    views: Mapping[str, tree.LayerView] | None = None,
) -> PyTree:
    """Global magnitude masks on ``|W_ij| / w_l``: exactly ``round(s N)`` weights removed."""
    views = {p: v for p, v in (tree.select(params) if views is None else views).items()
             if p in weights}
    return magnitude_masks(params, sparsity, scope="global", views=views,
                                     layer_weights=weights)


# ----------------------------------------------------------------------------- budgets
def budget_of(masks: PyTree) -> PyTree:
    """The budget realised by a masks pytree: per-leaf sparsity ``1 - mean(mask)``."""
    flat = {p: float(1.0 - np.mean(np.asarray(m))) for p, m in tree.flatten(masks).items()}
    return tree.unflatten_like(masks, flat)


def masks_from_budget(params: PyTree, budget: PyTree, masks: PyTree | None = None) -> PyTree:
    """Per-layer magnitude masks reaching each leaf's budgeted sparsity exactly.

    Args:
      params: parameter pytree.
      budget: budget pytree (float sparsity at pruned leaves, ``None`` elsewhere).
      masks: optional current masks; entries already removed stay removed (their score
        is set below every kept weight).

    Returns:
      Masks pytree (``None`` where the budget is ``None``).
    """
    sp = tree.flatten(budget)
    leaves = tree.flatten(params)
    old = tree.flatten(masks) if masks is not None else {}
    missing = [p for p in sp if p not in leaves]
    if missing:
        raise ValueError(f"{missing[0]}: budget names a leaf that params does not have.")
    out = {}
    for p, s in sp.items():
        check_sparsity(s, f"budget[{p}]")
        score = jnp.abs(jnp.asarray(leaves[p]).astype(jnp.float32))
        if p in old:
            score = jnp.where(old[p], score, -1.0)
        out[p] = topk_mask(score, s)
    return tree.unflatten_like(params, out)


def cycle_rate(cycle: int) -> float:
    """``rho_i = 0.06 * 1.02^i``, the pruning rate of cycle ``i`` of the cyclic procedure ([P25]).

    Examples:
      >>> round(cycle_rate(1), 4)
      0.0612
    """
    return 0.06 * 1.02**cycle


def cycle_budget(
    params: PyTree,
    fits: Mapping[str, Mapping[str, float]],
    cycle: int,
    masks: PyTree | None = None,
    *,
    max_sparsity: float = 0.99,
) -> PyTree:
    """The layer budget of cycle ``i >= 1`` of the cyclic procedure ([P25] §3).

    Each layer with a fit removes ``k = ((1 - gamma) mu)^(1.5 / i) * rho_i * nnz`` more
    weights, ``gamma`` = BEMA fit error, ``mu`` = bulk fraction, ``nnz`` = weights still
    kept. Returns the *cumulative* sparsity per leaf, capped at ``max_sparsity``.

    Args:
      params: parameter pytree.
      fits: ``{path: {"fit_error": gamma, "bulk_fraction": mu}}``.
      cycle: ``i``, starting at 1.
      masks: current masks (``None`` = dense).
      max_sparsity: cap of each layer's cumulative sparsity.

    Returns:
      A budget pytree (cumulative sparsity at each fitted leaf, ``None`` elsewhere).

    Raises:
      ValueError: ``cycle < 1``.
    """
    if cycle < 1:
        raise ValueError(f"cycle={cycle}: cycles are numbered from 1.")
    leaves = tree.flatten(params)
    old = tree.flatten(masks) if masks is not None else {}
    out = {}
    for p, f in fits.items():
        size = int(np.size(leaves[p]))
        nnz = int(np.count_nonzero(np.asarray(old[p]))) if p in old else size
        quality = max(0.0, (1.0 - f["fit_error"]) * f["bulk_fraction"])
        k = quality ** (1.5 / cycle) * cycle_rate(cycle) * nnz
        out[p] = min(max_sparsity, (size - nnz + k) / size)
    return tree.unflatten_like(params, out)

