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
from mpjax.arch import parse_pattern
from mpjax.pruning import cast, ser
from mpjax.pruning.budgets import masks_from_budget, seb_masks
from mpjax.pruning.cyclic import cyclic_prune
from mpjax.pruning.lowrank import lowrank, rank_for_density
from mpjax.pruning.masks import apply_masks, check_sparsity, magnitude_masks
from mpjax.pruning.nm import nm_masks, nm_matrix_mask, nm_views

PyTree = Any
Transform = Callable[[PyTree], tuple[PyTree, PyTree]]

__all__ = [
    "PATTERN_KINDS",
    "PruneRequest",
    "PruningMethod",
    "Report",
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
    "parse_target",
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
      hessians: ``{path: X^T X (d_in, d_in)}`` of the calibration inputs (SparseGPT).
      input_norms: ``{path: ||X_j|| (d_in,)}`` of the calibration inputs (Wanda, RIA).
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
    hessians: Mapping[str, Any] | None = None
    input_norms: Mapping[str, Any] | None = None
    ser_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    cast_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    cycle_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    on_indivisible: str = "error"

    def views_of(self, params: PyTree) -> Mapping[str, tree.LayerView]:
        """The layers to prune in ``params``."""
        return tree.select(params) if self.views is None else self.views


Report = Callable[[PruneRequest, PyTree, PyTree, PyTree, Mapping[str, tree.LayerView]],
                  dict[str, Any]]

#: The pattern kinds a method may support: ``"unstructured"`` and ``"nm"`` (any ``"K:N"``).
PATTERN_KINDS = ("unstructured", "nm")

@dataclasses.dataclass(frozen=True)
class PruningMethod:
    """One row of the method table: what a method supports and needs, and how it is built.

    Attributes:
      name: the method name (``prune(params, name, ...)``, ``mpjax prune --method name``).
      patterns: the pattern kinds it supports, a subset of :data:`PATTERN_KINDS`.
      build: ``PruneRequest -> (params -> (params, masks))``, called after validation.
      doc: what it removes, one short sentence (the last column of the table).
      needs_grad_fn: ``grad_fn(params) -> grads`` is required.
      uses_grad_fn: ``grad_fn`` is used when given (required or optional).
      needs_calibration: CAST block covariances are required (``prune``: ``calib_inputs``
        or ``calib_covs``; ``pruner``: ``covs``).
      needs_layer_weights: SEB layer weights ``w_l`` are required for the unstructured form
        (``prune`` computes them from the spectra; N:M groups lie within one layer, so a
        per-layer weight cannot change an N:M choice).
      uses_layer_weights: ``prune(..., seb=True)`` weights the method's unstructured stage.
      needs_hessian: calibration Gram matrices ``H = X^T X`` are required (``prune``:
        ``calib_inputs`` or ``calib_hessians``; ``pruner``: ``hessians``).
      needs_input_norms: calibration input norms ``||X_j||`` are required (``prune``: as
        above; ``pruner``: ``input_norms``).
      granularity: where the unstructured count is met: ``"global"`` (over the selected
        layers, or per layer with ``scope="layer"`` or a budget), ``"layer"`` (each layer
        removes ``round(s d_out d_in)``) or ``"row"`` (each row removes ``floor(s d_in)``).
      takes_budget: accepts a per-layer ``budget`` pytree.
      returns_masks: ``False`` for spectral methods that change values, not the support
        (their masks pytree has no leaves).
      jittable: the transformation can be traced by ``jax.jit``.
      hint: what to do instead when a pattern is not supported.
      report: optional ``(request, params, pruned, masks, views) -> dict`` of report extras.
    """

    name: str
    patterns: frozenset[str]
    build: Callable[[PruneRequest], Transform]
    doc: str
    needs_grad_fn: bool = False
    uses_grad_fn: bool = False
    needs_calibration: bool = False
    needs_layer_weights: bool = False
    uses_layer_weights: bool = False
    needs_hessian: bool = False
    needs_input_norms: bool = False
    granularity: str = "global"
    takes_budget: bool = False
    returns_masks: bool = True
    jittable: bool = True
    hint: str = "use method='cast' (or 'magnitude') for N:M."
    report: Report | None = None

    def __post_init__(self) -> None:
        unknown = set(self.patterns) - set(PATTERN_KINDS)
        if not self.patterns or unknown:
            raise ValueError(f"PruningMethod {self.name!r}: patterns={sorted(self.patterns)}; "
                             f"expected a non-empty subset of {PATTERN_KINDS}.")

    def signals(self) -> str:
        """The signals column of the table, e.g. ``"grad_fn"`` or ``"none"``."""
        out = []
        if self.takes_budget:
            out.append("budget (optional)")
        if self.needs_layer_weights:
            out.append("SEB layer weights")
        if self.needs_calibration:
            out.append("calibration")
        if self.needs_input_norms:
            out.append("calibration norms")
        if self.needs_hessian:
            out.append("calibration Hessian")
        if self.needs_grad_fn:
            out.append("grad_fn")
        elif self.uses_grad_fn:
            out.append("grad_fn (optional)")
        return ", ".join(out) or "none"


def parse_target(pattern: str, sparsity: float | None) -> tuple[int | None, int | None, float]:
    """``(k, n, sparsity)`` from a pattern and an optional sparsity.

    ``"K:N"`` implies ``sparsity = 1 - K/N``; passing a different sparsity is an error.

    Args:
      pattern: ``"unstructured"`` or ``"K:N"`` with ``0 < K < N``
        (:func:`mpjax.arch.parse_pattern`).
      sparsity: the share of weights to remove, required for ``"unstructured"``.

    Returns:
      ``(k, n, sparsity)``; ``k`` and ``n`` are ``None`` for ``"unstructured"``.

    Raises:
      ValueError: unstructured without sparsity, sparsity outside ``[0, 1)``, a malformed
        pattern, or a sparsity that contradicts the pattern.

    Examples:
      >>> parse_target("2:4", None)
      (2, 4, 0.5)
    """
    if pattern == "unstructured":
        if sparsity is None:
            raise ValueError("sparsity is required for pattern='unstructured'.")
        check_sparsity(sparsity)
        return None, None, float(sparsity)
    k, n = parse_pattern(pattern)
    implied = 1.0 - k / n
    if sparsity is not None and abs(float(sparsity) - implied) > 1e-9:
        raise ValueError(
            f"sparsity={sparsity} contradicts pattern={pattern!r} (which implies {implied:g}); "
            "drop sparsity= or make them agree."
        )
    return k, n, implied


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
