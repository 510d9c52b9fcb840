"""The cyclic singular-value procedure of [P25] ("classical RMT") and singular-vector sparsification.

One cycle ``i = 1, 2, ...`` (rate ``rho_i = 0.06 * 1.02^i``), per selected layer:

1. SVD of the (masked) weights and a BEMA fit: edge ``sigma_plus``, fit error ``gamma``,
   bulk fraction ``mu``.
2. On even cycles, singular-vector sparsification (:func:`sv_sparsify_matrix`): for bulk
   components ``s_k < sigma_plus`` zero the entries of ``u_k`` and ``v_k`` below
   ``theta * max(1/750, (1 - s_k/sigma_plus)^30)``, ``theta = 1.125e-5 rho_i N M``, and
   recompose with the same singular values.
3. Layer budget: remove ``k = ((1 - gamma) mu)^(1.5/i) rho_i nnz`` more weights by
   magnitude (:func:`mpjax.pruning.budgets.cycle_budget`).
4. Data-free regularisation between cycles: a few AdamW steps on
   ``lambda_g sum_rows ||W_r||_2 + lambda_1 ||W||_1 + lambda_2 ||W||_F^2`` with gradients
   masked so removed weights stay zero.

:func:`cyclic_prune` runs the cycles; given a target sparsity it stops before a cycle would
pass it and removes the rest by global magnitude, which is how ``prune(method="cyclic")``
reaches an exact sparsity. Supervised fine-tuning at the end is the caller's (it needs data).

The Haar-scaled variant of the singular-vector rule ([P26]) is :func:`sv_sparsify_haar`.
See `docs/method/budgets.md` (the cyclic singular-value procedure).

References:
  [P25] arXiv 2503.01922 §3; [P26] arXiv 2606.02608 (Haar preprocessing).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mpjax import tree
from mpjax.pruning.budgets import cycle_budget, cycle_rate, masks_from_budget
from mpjax.pruning.masks import apply_masks, check_sparsity, n_remove, score_masks

PyTree = Any

__all__ = [
    "CycleInfo",
    "cyclic_prune",
    "haar_z_eff",
    "prune_cycle",
    "regularize",
    "regularizer",
    "sv_sparsify",
    "sv_sparsify_haar",
    "sv_sparsify_matrix",
]


def _svd(W: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    Wf = jnp.asarray(W).astype(jnp.float32)
    return jnp.linalg.svd(Wf, full_matrices=False)


@jax.jit
def sv_sparsify_matrix(W: jax.Array, edge: Any, rho: Any) -> jax.Array:
    """Singular-vector sparsification of one ``(d_out, d_in)`` matrix, the rule of a cycle.

    Bulk components (``s_k < edge``) get entries of ``u_k`` and ``v_k`` with
    ``|.| < theta * max(1/750, (1 - s_k/edge)^30)`` set to zero, with
    ``theta = 1.125e-5 * rho * d_out * d_in``; spikes are untouched and no singular value is
    removed. Same shape and dtype as ``W``; ``edge`` and ``rho`` may be traced.
    """
    u, s, vt = _svd(W)
    d_out, d_in = jnp.shape(W)
    theta = 1.125e-5 * rho * d_out * d_in
    ratio = jnp.clip(1.0 - s / edge, 0.0, 1.0)
    thr = jnp.where(s < edge, theta * jnp.maximum(1.0 / 750.0, ratio**30), 0.0)
    u = jnp.where(jnp.abs(u) < thr[None, :], 0.0, u)
    vt = jnp.where(jnp.abs(vt) < thr[:, None], 0.0, vt)
    return ((u * s) @ vt).astype(jnp.asarray(W).dtype)


@jax.jit
def sv_sparsify_haar(W: jax.Array, edge: Any, z_eff: Any) -> jax.Array:
    """Haar-scaled singular-vector sparsification (the [P26] preprocessing option).

    Bulk components only, ``g_k = (1 - s_k/edge)^3``; zero ``u_ik`` with
    ``|u_ik| < z_eff g_k / sqrt(d_out)`` and ``v_jk`` with ``|v_jk| < z_eff g_k / sqrt(d_in)``
    (a Haar-random unit vector of length ``d`` has entries of size ``1/sqrt(d)``).
    """
    u, s, vt = _svd(W)
    d_out, d_in = jnp.shape(W)
    g = jnp.where(s < edge, jnp.clip(1.0 - s / edge, 0.0, 1.0) ** 3, 0.0)
    u = jnp.where(jnp.abs(u) < (z_eff * g / np.sqrt(d_out))[None, :], 0.0, u)
    vt = jnp.where(jnp.abs(vt) < (z_eff * g / np.sqrt(d_in))[:, None], 0.0, vt)
    return ((u * s) @ vt).astype(jnp.asarray(W).dtype)


def haar_z_eff(hill: Mapping[str, float], scale: float = 0.5) -> dict[str, float]:
    """``z_eff,l = scale * alpha_l / mean(alpha)`` from per-layer Hill exponents."""
    mean = float(np.mean(list(hill.values())))
    return {p: scale * a / mean for p, a in hill.items()}


def sv_sparsify(
    params: PyTree,
    edges: Mapping[str, float],
    *,
    rho: float | None = None,
    z_eff: Mapping[str, float] | None = None,
    rule: str = "cycle",
    views: Mapping[str, tree.LayerView] | None = None,
) -> PyTree:
    """Sparsify the singular vectors of every layer in ``edges``.

    Args:
      params: parameter pytree.
      edges: ``{path: sigma_plus}`` (singular-value scale); only these layers change.
      rho: the cycle rate ``rho_i`` (:func:`mpjax.pruning.budgets.cycle_rate`), for
        ``rule="cycle"``.
      z_eff: ``{path: z_eff}`` (:func:`haar_z_eff`), for ``rule="haar"``.
      rule: ``"cycle"`` (:func:`sv_sparsify_matrix`) or ``"haar"`` (:func:`sv_sparsify_haar`).
      views: layer views (default ``tree.select(params)``).

    Returns:
      ``params`` with the selected matrices recomposed (same structure and dtypes).

    Raises:
      ValueError: unknown ``rule`` or its parameter missing.
    """
    views = tree.select(params) if views is None else views
    views = {p: v for p, v in views.items() if p in edges}
    mats = tree.matrices(params, views)
    if rule == "cycle":
        if rho is None:
            raise ValueError("sv_sparsify(rule='cycle') needs rho (e.g. budgets.cycle_rate(i)).")
        new = {p: sv_sparsify_matrix(W, edges[p], rho) for p, W in mats.items()}
    elif rule == "haar":
        if z_eff is None:
            raise ValueError("sv_sparsify(rule='haar') needs z_eff={path: float} (haar_z_eff).")
        new = {p: sv_sparsify_haar(W, edges[p], z_eff[p]) for p, W in mats.items()}
    else:
        raise ValueError(f"rule={rule!r}; expected 'cycle' or 'haar'.")
    return tree.replace_matrices(params, new, views)


def regularizer(params: PyTree, views: Mapping[str, tree.LayerView], l1: float, l2: float,
                group: float) -> jax.Array:
    """``sum_l group * sum_rows ||W_r||_2 + l1 ||W||_1 + l2 ||W||_F^2`` (rows of the view)."""
    total = jnp.zeros((), jnp.float32)
    for W in tree.matrices(params, views).values():
        W = W.astype(jnp.float32)
        rows = jnp.sqrt(jnp.sum(W * W, axis=1) + 1e-12)
        total = total + group * rows.sum() + l1 * jnp.abs(W).sum() + l2 * jnp.sum(W * W)
    return total


@partial(jax.jit, static_argnames=("views", "lr", "l1", "l2", "group", "weight_decay"))
def _regularize_step(sub, state, mk, *, views, lr, l1, l2, group, weight_decay):
    """One masked AdamW step on :func:`regularizer`; compiled once per shapes and settings."""
    opt = optax.adamw(lr, weight_decay=weight_decay)
    # sub is a flat {path: leaf} dict, itself a pytree with the same paths
    val, g = jax.value_and_grad(lambda s: regularizer(s, dict(views), l1, l2, group))(sub)
    g = {p: jnp.where(mk[p], g[p], 0.0) if p in mk else g[p] for p in g}
    upd, state = opt.update(g, state, sub)
    sub = optax.apply_updates(sub, upd)
    return {p: jnp.where(mk[p], sub[p], 0.0) if p in mk else sub[p] for p in sub}, state, val


def regularize(
    params: PyTree,
    masks: PyTree,
    views: Mapping[str, tree.LayerView],
    *,
    steps: int = 10,
    lr: float = 1e-4,
    l1: float = 1e-6,
    l2: float = 1e-6,
    group: float = 1e-6,
    weight_decay: float = 0.0,
) -> tuple[PyTree, list[float]]:
    """Data-free AdamW steps on :func:`regularizer` with masked gradients.

    Only the leaves in ``views`` move; removed weights stay exactly zero.

    Args:
      params: parameter pytree.
      masks: masks pytree (``True`` = kept) of the leaves in ``views``.
      views: the layers to regularise.
      steps, lr, weight_decay: the AdamW steps.
      l1, l2, group: the weights of :func:`regularizer`.

    Returns:
      ``(params, losses)`` (the loss before each step).
    """
    sub = {p: jnp.asarray(w).astype(jnp.float32) for p, w in tree.flatten(params).items()
           if p in views}
    mk = {p: m for p, m in tree.flatten(masks).items() if p in sub}
    state = optax.adamw(lr, weight_decay=weight_decay).init(sub)
    settings = dict(views=tuple((p, views[p]) for p in sub), lr=lr, l1=l1, l2=l2, group=group,
                    weight_decay=weight_decay)
    losses = []
    for _ in range(steps):
        sub, state, val = _regularize_step(sub, state, mk, **settings)
        losses.append(float(val))
    flat = tree.flatten(params)
    flat.update({p: sub[p].astype(jnp.asarray(flat[p]).dtype) for p in sub})
    return tree.unflatten_like(params, flat), losses


class CycleInfo(NamedTuple):
    """One cycle: ``cycle``, ``rho``, per-layer ``fits`` and ``sparsity``, ``reg_losses``."""

    cycle: int
    rho: float
    fits: dict[str, dict[str, float]]
    sparsity: dict[str, float]
    reg_losses: list[float]


def prune_cycle(
    params: PyTree,
    masks: PyTree | None,
    cycle: int,
    *,
    views: Mapping[str, tree.LayerView] | None = None,
    fit_kwargs: Mapping[str, Any] | None = None,
    reg_kwargs: Mapping[str, Any] | None = None,
) -> tuple[PyTree, PyTree, CycleInfo]:
    """One cycle: MP fit, SV sparsification on even cycles, layer budget, regularisation.

    Args:
      params: parameter pytree (already masked by ``masks``).
      masks: the masks of the previous cycles (``None`` before the first).
      cycle: ``i``, starting at 1.
      views: layers to prune (default ``tree.select(params)``).
      fit_kwargs: options of ``mpjax.mp.fit`` (BEMA by default).
      reg_kwargs: options of :func:`regularize`.

    Returns:
      ``(params, masks, CycleInfo)``; masks are cumulative (removed weights stay removed).
    """
    from mpjax import mp  # local import: the MP fits are only needed here

    views = tree.select(params) if views is None else views
    rho = cycle_rate(cycle)
    svals = mp.singular_values(params, views)
    fits = {}
    for p, s in svals.items():
        f = mp.fit(np.asarray(s), views[p].shape, **dict(fit_kwargs or {}))
        fits[p] = dict(edge=float(f.edge), fit_error=float(f.fit_error),
                       bulk_fraction=float(f.bulk_fraction))
    if cycle % 2 == 0:
        params = sv_sparsify(params, {p: f["edge"] for p, f in fits.items()}, rho=rho,
                             views=views)
        if masks is not None:
            params = apply_masks(params, masks)
    masks = masks_from_budget(params, cycle_budget(params, fits, cycle, masks), masks)
    params = apply_masks(params, masks)
    params, losses = regularize(params, masks, views, **dict(reg_kwargs or {}))
    sp = {p: float(1 - np.mean(np.asarray(m))) for p, m in tree.flatten(masks).items()}
    return params, masks, CycleInfo(cycle, rho, fits, sp, losses)


def _removed(masks: PyTree | None) -> int:
    if masks is None:
        return 0
    return sum(int(np.size(m) - np.count_nonzero(np.asarray(m)))
               for m in tree.flatten(masks).values())


def _top_up(params: PyTree, masks: PyTree | None, sparsity: float,
            views: Mapping[str, tree.LayerView]) -> PyTree:
    """Global magnitude masks reaching ``sparsity`` exactly over ``views``, keeping removals."""
    leaves = tree.flatten(params)
    old = tree.flatten(masks) if masks is not None else {}
    scores = {}
    for p in views:
        a = jnp.abs(jnp.asarray(leaves[p]).astype(jnp.float32))
        scores[p] = jnp.where(old[p], a, -1.0) if p in old else a
    return tree.unflatten_like(params, score_masks(scores, sparsity, "global"))


def cyclic_prune(
    params: PyTree,
    cycles: int = 34,
    *,
    sparsity: float | None = None,
    views: Mapping[str, tree.LayerView] | None = None,
    **kwargs: Any,
) -> tuple[PyTree, PyTree, list[CycleInfo]]:
    """Run :func:`prune_cycle` for ``i = 1..cycles``.

    Args:
      params: dense parameters.
      cycles: the number of cycles (34 in [P25]).
      sparsity: optional global target over ``views``: the cycles stop before one would
        remove more than ``round(sparsity * N)`` weights (that cycle is discarded), and a
        global magnitude step then removes the rest, so exactly ``round(sparsity * N)``
        weights are gone.
      views: layers to prune (default ``tree.select(params)``).
      **kwargs: ``fit_kwargs``, ``reg_kwargs`` of :func:`prune_cycle`.

    Returns:
      ``(params, masks, history)``, one :class:`CycleInfo` per cycle kept.
    """
    views = tree.select(params) if views is None else views
    target = None
    if sparsity is not None:
        check_sparsity(sparsity)
        target = int(n_remove(sparsity, sum(v.d_out * v.d_in for v in views.values())))
    masks, history = None, []
    for i in range(1, cycles + 1):
        new_params, new_masks, info = prune_cycle(params, masks, i, views=views, **kwargs)
        if target is not None and _removed(new_masks) > target:
            break
        params, masks = new_params, new_masks
        history.append(info)
    if sparsity is not None:
        masks = _top_up(params, masks, sparsity, views)
        params = apply_masks(params, masks)
    return params, masks, history
