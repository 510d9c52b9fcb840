"""The transformations behind each built-in pruning method, and their report extras.

Each ``build_<method>(request)`` returns the pure transformation ``params -> (params, masks)``
of one method, with every signal already in the :class:`PruneRequest`; the registry
(:mod:`mpjax.pruning.registry`) says which method supports which pattern and needs which
signal, and validates a request before any builder sees it. ``<method>_report`` functions
add the method's extras to the report of :func:`mpjax.pruning.prune`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from mpjax import tree
from mpjax.pruning import cast, ser
from mpjax.pruning.budgets import masks_from_budget, seb_masks
from mpjax.pruning.cyclic import cyclic_prune
from mpjax.pruning.lowrank import lowrank, rank_for_density
from mpjax.pruning.masks import apply_masks, magnitude_masks
from mpjax.pruning.nm import nm_masks, nm_matrix_mask, nm_views

PyTree = Any
Transform = Callable[[PyTree], tuple[PyTree, PyTree]]

__all__ = [
    "PruneRequest",
    "Transform",
    "build_cast",
    "build_cyclic",
    "build_hybrid",
    "build_lowrank",
    "build_magnitude",
    "build_seb",
    "build_ser",
    "cast_report",
    "lowrank_report",
]


@dataclasses.dataclass(frozen=True)
class PruneRequest:
    """One method's target and signals, validated by the registry.

    Attributes:
      k, n: the N:M pattern, or ``None`` for ``"unstructured"``.
      sparsity: the target share of weights to remove (``1 - k/n`` for N:M).
      views: layers to prune, or ``None`` for ``tree.select(params)`` at call time.
      scope: ``"global"`` or ``"layer"`` (unstructured magnitude).
      budget: per-layer sparsity pytree (methods that take a budget).
      layer_weights: SEB layer weights ``{path: w_l}``.
      grad_fn: ``params -> grads`` (SER and the methods built on it).
      covs: CAST block covariances ``{path: (d_in/n, n, n)}``.
      ser_kwargs, cast_kwargs, cycle_kwargs: options of :func:`mpjax.pruning.ser.ser`,
        :func:`mpjax.pruning.cast.cast` and :func:`mpjax.pruning.cyclic.cyclic_prune`.
      on_indivisible: ``"error"`` or ``"skip"`` for N:M layers with ``d_in % n != 0``.
    """

    k: int | None
    n: int | None
    sparsity: float
    views: Mapping[str, tree.LayerView] | None = None
    scope: str = "global"
    budget: PyTree | None = None
    layer_weights: Mapping[str, float] | None = None
    grad_fn: ser.GradFn | None = None
    covs: Mapping[str, Any] | None = None
    ser_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    cast_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    cycle_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    on_indivisible: str = "error"

    def views_of(self, params: PyTree) -> Mapping[str, tree.LayerView]:
        """The layers to prune in ``params``."""
        return tree.select(params) if self.views is None else self.views


def _nm_magnitude(req: PruneRequest, params: PyTree) -> tuple[PyTree, PyTree]:
    m = nm_masks(params, req.k, req.n, views=req.views_of(params),
                 on_indivisible=req.on_indivisible)
    return apply_masks(params, m), m


def build_magnitude(req: PruneRequest) -> Transform:
    """Smallest ``|W|`` (global or per layer, or per-layer budgets); top-k ``|W|`` for N:M."""

    def transform(params: PyTree) -> tuple[PyTree, PyTree]:
        if req.n is not None:
            return _nm_magnitude(req, params)
        if req.budget is not None:
            m = masks_from_budget(params, req.budget)
        else:
            m = magnitude_masks(params, req.sparsity, scope=req.scope,
                                views=req.views_of(params))
        return apply_masks(params, m), m

    return transform


def build_seb(req: PruneRequest) -> Transform:
    """Global ``|W| / w_l`` with SEB weights; for N:M the magnitude pattern (``w_l`` is
    constant within a row group, so it cannot change an N:M choice)."""

    def transform(params: PyTree) -> tuple[PyTree, PyTree]:
        if req.n is not None:
            return _nm_magnitude(req, params)
        m = seb_masks(params, req.sparsity, req.layer_weights, req.views_of(params))
        return apply_masks(params, m), m

    return transform


def build_ser(req: PruneRequest) -> Transform:
    """SER prune-restore (:func:`mpjax.pruning.ser.ser`)."""

    def transform(params: PyTree) -> tuple[PyTree, PyTree]:
        p, m, _ = ser.ser(params, req.sparsity, req.grad_fn, layer_weights=req.layer_weights,
                          views=req.views_of(params), **req.ser_kwargs)
        return p, m

    return transform


def build_hybrid(req: PruneRequest) -> Transform:
    """Global magnitude up to sparsity 0.20, SER above (:func:`mpjax.pruning.ser.hybrid`)."""

    def transform(params: PyTree) -> tuple[PyTree, PyTree]:
        return ser.hybrid(params, req.sparsity, req.grad_fn, layer_weights=req.layer_weights,
                          views=req.views_of(params), **req.ser_kwargs)

    return transform


def build_cast(req: PruneRequest) -> Transform:
    """Unstructured SER (or SEB / magnitude without ``grad_fn``) at ``1 - k/n``, then the
    CAST N:M projection of the layers with covariances."""

    def transform(params: PyTree) -> tuple[PyTree, PyTree]:
        cv = {p: w for p, w in req.views_of(params).items() if p in req.covs}
        cv, _ = nm_views(cv, req.n, req.on_indivisible)
        if req.grad_fn is not None:
            sp, sm, _ = ser.ser(params, req.sparsity, req.grad_fn,
                                layer_weights=req.layer_weights, views=cv, **req.ser_kwargs)
        else:
            sm = magnitude_masks(params, req.sparsity, scope="global", views=cv,
                                 layer_weights=req.layer_weights)
            sp = apply_masks(params, sm)
        p, m, _ = cast.cast(params, req.k, req.n, req.covs, ser_params=sp, ser_masks=sm,
                            views=cv, **req.cast_kwargs)
        return p, m

    return transform


def build_lowrank(req: PruneRequest) -> Transform:
    """Rank with ``r (d_out + d_in) <= (1 - S) d_out d_in`` per layer; no masks."""

    def transform(params: PyTree) -> tuple[PyTree, PyTree]:
        out, _ = lowrank(params, density=1.0 - req.sparsity, views=req.views_of(params))
        return out, tree.unflatten_like(params, {})

    return transform


def build_cyclic(req: PruneRequest) -> Transform:
    """The cyclic singular-value procedure to an exact global sparsity
    (:func:`mpjax.pruning.cyclic.cyclic_prune`); eager only (it fits the MP law in numpy)."""

    def transform(params: PyTree) -> tuple[PyTree, PyTree]:
        p, m, _ = cyclic_prune(params, sparsity=req.sparsity, views=req.views_of(params),
                               **req.cycle_kwargs)
        return p, m

    return transform


def cast_report(req: PruneRequest, params: PyTree, pruned: PyTree, masks: PyTree,
                views: Mapping[str, tree.LayerView]) -> dict[str, Any]:
    """``cast_cost``: per layer the calibration cost of what CAST and magnitude N:M remove.

    Args:
      req: the validated request (``k``, ``n`` and ``covs`` are used).
      params, pruned, masks: the dense parameters, the result and its masks.
      views: the pruned layers.

    Returns:
      ``{"cast_cost": {path: {"cast": cost, "magnitude": cost}}}``.
    """
    dense, out = tree.matrices(params, views), tree.matrices(pruned, views)
    mflat = tree.flatten(masks)
    # Cost of what each method removes from the dense layer: r = W_dense - W_pruned.
    return {"cast_cost": {
        p: dict(cast=float(cast.calibration_cost(
                    dense[p] - out[p], np.zeros(dense[p].shape, bool), req.covs[p])),
                magnitude=float(cast.calibration_cost(
                    dense[p], nm_matrix_mask(np.abs(dense[p]), req.k, req.n), req.covs[p])))
        for p in req.covs if p in mflat
    }}


def lowrank_report(req: PruneRequest, params: PyTree, pruned: PyTree, masks: PyTree,
                   views: Mapping[str, tree.LayerView]) -> dict[str, Any]:
    """``lowrank_rank`` per layer and ``lowrank_density``, the factored parameter share.

    A layer holds ``min(r (d_out + d_in), d_out d_in)`` parameters: as two rank-``r``
    factors, or dense where the factors would not be smaller (tiny layers, whose rank is
    clipped to at least 1).

    Args:
      req: the validated request (``sparsity`` is used).
      params, pruned, masks: the dense parameters, the result and its (empty) masks.
      views: the pruned layers.

    Returns:
      ``{"lowrank_rank": {path: rank}, "lowrank_density": float}``.
    """
    ranks = {p: rank_for_density(v.shape, 1.0 - req.sparsity) for p, v in views.items()}
    factored = sum(min(r * (views[p].d_out + views[p].d_in), views[p].d_out * views[p].d_in)
                   for p, r in ranks.items())  # fmt: skip
    return {"lowrank_rank": ranks,
            "lowrank_density": factored / sum(v.d_out * v.d_in for v in views.values())}
