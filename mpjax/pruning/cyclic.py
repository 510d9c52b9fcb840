"""The P25 "classical RMT" cyclic pruning procedure and singular-vector sparsification.

One cycle ``i = 1, 2, ...`` (rate ``rho_i = 0.06 * 1.02^i``), per selected layer:

1. SVD of the (masked) weights and a BEMA fit: edge ``sigma_plus``, fit error ``gamma``,
   bulk fraction ``mu``.
2. On even cycles, singular-vector sparsification (:func:`sv_sparsify_matrix`): for bulk
   components ``s_k < sigma_plus`` zero the entries of ``u_k`` and ``v_k`` below
   ``theta * max(1/750, (1 - s_k/sigma_plus)^30)``, ``theta = 1.125e-5 rho_i N M``, and
   recompose with the same singular values.
3. Layer budget: remove ``k = ((1 - gamma) mu)^(1.5/i) rho_i nnz`` more weights by
   magnitude (:func:`mpjax.pruning.budgets.p25_budget`).
4. Data-free regularisation between cycles: a few AdamW steps on
   ``lambda_g sum_rows ||W_r||_2 + lambda_1 ||W||_1 + lambda_2 ||W||_F^2`` with gradients
   masked so removed weights stay zero.

Supervised fine-tuning at the end is the caller's (it needs data).

The Haar-scaled variant of the singular-vector rule (P26) is :func:`sv_sparsify_haar`.

References:
  [P25] arXiv 2503.01922 §3; [P26] arXiv 2606.02608 (Haar preprocessing). SPEC §4.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mpjax import tree
from mpjax.pruning import budgets as budget_lib
from mpjax.pruning import masks as masks_lib

PyTree = Any


def _svd(W: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    Wf = jnp.asarray(W).astype(jnp.float32)
    return jnp.linalg.svd(Wf, full_matrices=False)


@jax.jit
def sv_sparsify_matrix(W: jax.Array, edge: Any, rho: Any) -> jax.Array:
    """P25 singular-vector sparsification of one ``(d_out, d_in)`` matrix.

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
    """Haar-scaled singular-vector sparsification (P26 preprocessing option).

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
    rule: str = "p25",
    views: Mapping[str, tree.LayerView] | None = None,
) -> PyTree:
    """Apply :func:`sv_sparsify_matrix` (``rule="p25"``, needs ``rho``) or
    :func:`sv_sparsify_haar` (``rule="haar"``, needs ``z_eff``) to the layers in ``edges``."""
    views = tree.select(params) if views is None else views
    views = {p: v for p, v in views.items() if p in edges}
    mats = tree.matrices(params, views)
    if rule == "p25":
        if rho is None:
            raise ValueError("sv_sparsify(rule='p25') needs rho (e.g. budget.p25_rho(cycle)).")
        new = {p: sv_sparsify_matrix(W, edges[p], rho) for p, W in mats.items()}
    elif rule == "haar":
        if z_eff is None:
            raise ValueError("sv_sparsify(rule='haar') needs z_eff={path: float} (haar_z_eff).")
        new = {p: sv_sparsify_haar(W, edges[p], z_eff[p]) for p, W in mats.items()}
    else:
        raise ValueError(f"rule={rule!r}; expected 'p25' or 'haar'.")
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
    Returns ``(params, losses)`` (the loss before each step).
    """
    sub = {p: jnp.asarray(w).astype(jnp.float32) for p, w in tree.flatten(params).items()
           if p in views}
    mk = {p: m for p, m in tree.flatten(masks).items() if p in sub}
    opt = optax.adamw(lr, weight_decay=weight_decay)
    state = opt.init(sub)

    sub_views = {p: views[p] for p in sub}

    def loss(s):  # s is a flat {path: leaf} dict, itself a pytree with the same paths
        return regularizer(s, sub_views, l1, l2, group)

    @jax.jit
    def step(s, st):
        val, g = jax.value_and_grad(loss)(s)
        g = {p: jnp.where(mk[p], g[p], 0.0) if p in mk else g[p] for p in g}
        upd, st = opt.update(g, st, s)
        s = optax.apply_updates(s, upd)
        return {p: jnp.where(mk[p], s[p], 0.0) if p in mk else s[p] for p in s}, st, val

    losses = []
    for _ in range(steps):
        sub, state, val = step(sub, state)
        losses.append(float(val))
    flat = tree.flatten(params)
    flat.update({p: sub[p].astype(jnp.asarray(flat[p]).dtype) for p in sub})
    return tree.unflatten_like(params, flat), losses


class CycleInfo(NamedTuple):
    """One P25 cycle: ``cycle``, ``rho``, per-layer ``fits`` and ``sparsity``, ``reg_losses``."""

    cycle: int
    rho: float
    fits: dict[str, dict[str, float]]
    sparsity: dict[str, float]
    reg_losses: list[float]


def p25_cycle(
    params: PyTree,
    masks: PyTree | None,
    cycle: int,
    *,
    views: Mapping[str, tree.LayerView] | None = None,
    fit_kwargs: Mapping[str, Any] | None = None,
    reg_kwargs: Mapping[str, Any] | None = None,
) -> tuple[PyTree, PyTree, CycleInfo]:
    """One P25 cycle (fit, SV sparsification on even cycles, budget, regularisation)."""
    from mpjax.mp import fits as mp
    from mpjax.mp import spectra

    views = tree.select(params) if views is None else views
    rho = budget_lib.p25_rho(cycle)
    svals = spectra.singular_values(params, views)
    fits = {}
    for p, s in svals.items():
        f = mp.fit(np.asarray(s), views[p].shape, **dict(fit_kwargs or {}))
        fits[p] = dict(edge=float(f.edge), fit_error=float(f.fit_error),
                       bulk_fraction=float(f.bulk_fraction))
    if cycle % 2 == 0:
        params = sv_sparsify(params, {p: f["edge"] for p, f in fits.items()}, rho=rho,
                             views=views)
        if masks is not None:
            params = masks_lib.apply_masks(params, masks)
    b = budget_lib.p25_budget(params, fits, cycle, masks)
    masks = budget_lib.masks_from_budget(params, b, masks)
    params = masks_lib.apply_masks(params, masks)
    params, losses = regularize(params, masks, views, **dict(reg_kwargs or {}))
    sp = {p: float(1 - np.mean(np.asarray(m))) for p, m in tree.flatten(masks).items()}
    return params, masks, CycleInfo(cycle, rho, fits, sp, losses)


def p25_prune(
    params: PyTree,
    cycles: int = 34,
    **kwargs: Any,
) -> tuple[PyTree, PyTree, list[CycleInfo]]:
    """Run :func:`p25_cycle` for ``i = 1..cycles``; returns ``(params, masks, history)``."""
    masks, history = None, []
    for i in range(1, cycles + 1):
        params, masks, info = p25_cycle(params, masks, i, **kwargs)
        history.append(info)
    return params, masks, history
