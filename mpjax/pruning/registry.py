"""Pruning as pytree transformations: one table of methods, one entry point over all of them.

Every method is a pure transformation ``params -> (params, masks)`` that keeps the tree
structure and dtypes (see :mod:`mpjax.pruning.masks` for the masks contract). The table
:data:`METHODS` says, per method, which patterns it supports (``"unstructured"`` and/or
``"nm"``, i.e. ``"K:N"``) and which signals it needs; :func:`pruner` and :func:`prune` read
it instead of testing method names. :func:`pruner` builds the transformation once the
data-dependent signals are prepared (SEB layer weights, calibration covariances, a gradient
function), so it can be ``jax.jit``-ed and reused without recompiling; :func:`prune` is the
eager convenience wrapper that prepares the signals, runs the transformation and adds a
report. A new method is one :func:`register` call with a :class:`PruningMethod`.

Methods (the table is :func:`describe_methods`; a test keeps the two equal):

| method | patterns | signals | what it does |
| --- | --- | --- | --- |
| magnitude | unstructured, K:N | budget (optional) | smallest magnitudes; K:N: the top k of each group |
| seb | unstructured, K:N | SEB layer weights | smallest magnitude / w_l; K:N: as magnitude |
| ser | unstructured | grad_fn | over-prune, train the removed weights, restore the best |
| hybrid | unstructured | grad_fn | magnitude up to sparsity 0.20, SER above |
| cast | K:N | calibration, grad_fn (optional) | SER (or magnitude), then the CAST projection |
| lowrank | unstructured | none | rank r with r (d_out + d_in) <= (1 - S) d_out d_in; no masks |
| cyclic | unstructured | none | cycles of MP-fit budgets and SV sparsification; eager only |
| wanda | unstructured, K:N | budget (optional), calibration norms | per row, smallest abs(W_ij) norm(X_j) |
| ria | unstructured, K:N | budget (optional), calibration norms | per row, smallest relative importance x norm(X_j)^0.5 |
| sparsegpt | unstructured, K:N | budget (optional), calibration Hessian | OBS sweep: mask by W^2 / [H^-1]_jj, update the rest |

A ``budget`` pytree (per-layer sparsities, :mod:`mpjax.pruning.budgets`) overrides the global
target of the unstructured form of the methods that take one: each layer is pruned to its own
sparsity. The post-training baselines (``wanda``, ``ria``, ``sparsegpt``,
:mod:`mpjax.pruning.posttrain`) read calibration signals prepared from the same
``calib_inputs`` as CAST. See `docs/method/budgets.md`, `docs/method/ser.md`,
`docs/method/cast.md`, `docs/method/lowrank.md` and `docs/method/posttrain.md`.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Any

import jax

from mpjax import tree
from mpjax.pruning import budgets, cast, methods, posttrain
from mpjax.pruning.masks import summary
from mpjax.pruning.methods import (
    PATTERN_KINDS,
    PruneRequest,
    PruningMethod,
    Transform,
    parse_target,
)
from mpjax.pruning.nm import nm_views
from mpjax.pruning.ser import GradFn

PyTree = Any

__all__ = [
    "METHODS",
    "PATTERN_KINDS",
    "PruneRequest",
    "PruningMethod",
    "describe_methods",
    "get_method",
    "parse_target",
    "prune",
    "pruner",
    "register",
]


_TABLE: dict[str, PruningMethod] = {}

#: The method table, ``{name: PruningMethod}`` in registration order (read-only; add with
#: :func:`register`). ``tuple(METHODS)`` lists the names, ``name in METHODS`` checks one.
METHODS: Mapping[str, PruningMethod] = types.MappingProxyType(_TABLE)


def register(method: PruningMethod, *, replace: bool = False) -> PruningMethod:
    """Add ``method`` to :data:`METHODS`; ``prune``, ``pruner`` and the CLI then accept it.

    Args:
      method: the table row; its ``build`` receives a validated :class:`PruneRequest`.
      replace: overwrite a method of the same name.

    Returns:
      ``method``.

    Raises:
      ValueError: a method of that name exists (pass ``replace=True`` to overwrite it).
    """
    if method.name in _TABLE and not replace:
        raise ValueError(f"method {method.name!r} is already registered; pass replace=True.")
    _TABLE[method.name] = method
    return method


for _method in (
    PruningMethod("magnitude", frozenset(PATTERN_KINDS), methods.build_magnitude,
                  "smallest magnitudes; K:N: the top k of each group",
                  takes_budget=True),
    PruningMethod("seb", frozenset(PATTERN_KINDS), methods.build_seb,
                  "smallest magnitude / w_l; K:N: as magnitude", needs_layer_weights=True),
    PruningMethod("ser", frozenset({"unstructured"}), methods.build_ser,
                  "over-prune, train the removed weights, restore the best",
                  needs_grad_fn=True, uses_grad_fn=True, uses_layer_weights=True),
    PruningMethod("hybrid", frozenset({"unstructured"}), methods.build_hybrid,
                  "magnitude up to sparsity 0.20, SER above",
                  needs_grad_fn=True, uses_grad_fn=True, uses_layer_weights=True),
    PruningMethod("cast", frozenset({"nm"}), methods.build_cast,
                  "SER (or magnitude), then the CAST projection",
                  uses_grad_fn=True, needs_calibration=True, uses_layer_weights=True,
                  hint="it is an N:M projection; pass pattern='K:N'.",
                  report=methods.cast_report),
    PruningMethod("lowrank", frozenset({"unstructured"}), methods.build_lowrank,
                  "rank r with r (d_out + d_in) <= (1 - S) d_out d_in; no masks",
                  returns_masks=False, report=methods.lowrank_report),
    PruningMethod("cyclic", frozenset({"unstructured"}), methods.build_cyclic,
                  "cycles of MP-fit budgets and SV sparsification; eager only",
                  jittable=False),
    PruningMethod("wanda", frozenset(PATTERN_KINDS), posttrain.build_wanda,
                  "per row, smallest abs(W_ij) norm(X_j)", needs_input_norms=True,
                  granularity="row", takes_budget=True),
    PruningMethod("ria", frozenset(PATTERN_KINDS), posttrain.build_ria,
                  "per row, smallest relative importance x norm(X_j)^0.5",
                  needs_input_norms=True, granularity="row", takes_budget=True),
    PruningMethod("sparsegpt", frozenset(PATTERN_KINDS), posttrain.build_sparsegpt,
                  "OBS sweep: mask by W^2 / [H^-1]_jj, update the rest", needs_hessian=True,
                  granularity="layer", takes_budget=True),
):
    register(_method)


def describe_methods() -> str:
    """The table of :data:`METHODS` in Markdown (the one in this module's docstring)."""
    lines = ["| method | patterns | signals | what it does |", "| --- | --- | --- | --- |"]
    for m in METHODS.values():
        pats = ", ".join("unstructured" if p == "unstructured" else "K:N"
                         for p in PATTERN_KINDS if p in m.patterns)
        lines.append(f"| {m.name} | {pats} | {m.signals()} | {m.doc} |")
    return "\n".join(lines)


def get_method(name: str) -> PruningMethod:
    """The :class:`PruningMethod` called ``name``.

    Args:
      name: a method name.

    Returns:
      The table row.

    Raises:
      ValueError: no such method (the message lists the registered ones).
    """
    if name not in METHODS:
        raise ValueError(f"method={name!r}; expected one of {tuple(METHODS)}.")
    return METHODS[name]


def _supported(method: PruningMethod, pattern: str, n: int | None) -> None:
    if ("unstructured" if n is None else "nm") not in method.patterns:
        raise ValueError(f"method={method.name!r} has no {pattern} form; {method.hint}")


def pruner(
    method: str,
    pattern: str = "unstructured",
    sparsity: float | None = None,
    *,
    views: Mapping[str, tree.LayerView] | None = None,
    scope: str = "global",
    budget: PyTree | None = None,
    layer_weights: Mapping[str, float] | None = None,
    grad_fn: GradFn | None = None,
    covs: Mapping[str, Any] | None = None,
    hessians: Mapping[str, Any] | None = None,
    input_norms: Mapping[str, Any] | None = None,
    ser_kwargs: Mapping[str, Any] | None = None,
    cast_kwargs: Mapping[str, Any] | None = None,
    on_indivisible: str = "error",
    cycle_kwargs: Mapping[str, Any] | None = None,
) -> Transform:
    """The pure transformation ``params -> (params, masks)`` of one method.

    Signals are inputs, not computed here: ``layer_weights`` (SEB ``w_l``, see
    :func:`mpjax.pruning.budgets.seb_weights`), ``grad_fn`` (SER), ``covs`` (CAST block
    covariances, :func:`mpjax.pruning.cast.covariances`), ``hessians`` and ``input_norms``
    (:func:`mpjax.pruning.posttrain.layer_hessians`, :func:`~mpjax.pruning.posttrain.input_norms`).
    The returned function is traceable
    (wrap it in ``jax.jit``) when the method is :attr:`PruningMethod.jittable`.

    Args:
      method: a name in :data:`METHODS`.
      pattern: ``"unstructured"`` or ``"K:N"``.
      sparsity: target in ``[0, 1)``; optional for ``"K:N"`` (must then agree).
      views: layers to prune (default ``tree.select(params)`` at call time).
      scope, budget, layer_weights, grad_fn, covs, hessians, input_norms, on_indivisible:
        see :class:`PruneRequest`.
      ser_kwargs, cast_kwargs, cycle_kwargs: options of SER, CAST and the cyclic procedure.

    Returns:
      The transformation.

    Raises:
      ValueError: unknown method, method/pattern combinations that do not exist, missing
        signals, sparsity outside ``[0, 1)``.
    """
    m = get_method(method)
    k, n, s = parse_target(pattern, sparsity)
    _supported(m, pattern, n)
    if m.needs_grad_fn and grad_fn is None:
        raise ValueError(f"method={method!r} needs grad_fn(params) -> grads.")
    if m.needs_layer_weights and n is None and layer_weights is None:
        raise ValueError(f"method={method!r} needs layer_weights (budgets.seb_weights).")
    if budget is not None and not m.takes_budget:
        takers = " or ".join(f"method={t.name!r}" for t in METHODS.values() if t.takes_budget)
        raise ValueError(f"budget= is used by {takers} only, not {method!r}.")
    if m.needs_calibration and covs is None:
        raise ValueError(f"method={method!r} needs covs (cast.covariances(calib_inputs, n)).")
    if m.needs_hessian and hessians is None:
        raise ValueError(f"method={method!r} needs hessians (posttrain.layer_hessians).")
    if m.needs_input_norms and input_norms is None:
        raise ValueError(f"method={method!r} needs input_norms (posttrain.input_norms).")
    if hessians is not None:
        posttrain.check_hessians(hessians, views)
    return m.build(PruneRequest(
        k=k, n=n, sparsity=s, views=views, scope=scope, budget=budget,
        layer_weights=layer_weights, grad_fn=grad_fn, covs=covs, hessians=hessians,
        input_norms=input_norms,
        ser_kwargs=dict(ser_kwargs or {}), cast_kwargs=dict(cast_kwargs or {}),
        cycle_kwargs=dict(cycle_kwargs or {}), on_indivisible=on_indivisible,
    ))  # fmt: skip


def prune(
    params: PyTree,
    method: str,
    pattern: str = "unstructured",
    sparsity: float | None = None,
    *,
    calib_inputs: Mapping[str, Any] | None = None,
    grad_fn: GradFn | None = None,
    budget: PyTree | None = None,
    calib_covs: Mapping[str, Any] | None = None,
    calib_hessians: Mapping[str, Any] | None = None,
    include: tree.Selector = None,
    exclude: tree.Selector = None,
    scope: str = "global",
    signals: Mapping[str, Mapping[str, float]] | None = None,
    plain_below: float | None = None,
    seb: bool = False,
    alpha_ser: float = 0.1,
    exhaustive: bool | None = None,
    max_patterns: int = 1024,
    max_rows: int = 4096,
    ser_kwargs: Mapping[str, Any] | None = None,
    on_indivisible: str = "error",
    tokens: int | Mapping[str, int] | None = None,
    jit: bool = False,
    cycle_kwargs: Mapping[str, Any] | None = None,
) -> tuple[PyTree, PyTree, dict[str, Any]]:
    """Prune ``params`` with one method: ``(params, masks, report)``.

    Args:
      params: parameter pytree (Linen dict, ``nnx.State`` or torch-layout flat dict).
      method: a name in :data:`METHODS`.
      pattern: ``"unstructured"`` or ``"K:N"`` (sparsity ``1 - K/N``).
      sparsity: target in ``[0, 1)``; optional for ``"K:N"`` (must then agree).
      calib_inputs: ``{path: X (rows, d_in)}`` captured layer inputs (CAST, Wanda, RIA,
        SparseGPT; layers without inputs are left dense and listed in ``skipped``). Only the
        first ``max_rows`` rows are used; NaN/Inf inputs raise.
      grad_fn: ``params -> grads`` for SER/Hybrid (and CAST's SER source, if given).
      budget: per-layer sparsity pytree (methods that take one, unstructured form).
      calib_covs: instead of ``calib_inputs``, precomputed block covariances
        ``{path: (d_in/n, n, n)}`` (:func:`mpjax.pruning.cast.block_covariances`, or a running
        sum of ``X_g^T X_g / T`` over captured batches), so inputs need not be kept in memory.
      calib_hessians: for Wanda, RIA and SparseGPT, instead of ``calib_inputs``, the Gram
        matrices ``{path: X^T X (d_in, d_in)}`` (a running sum over captured batches).
      include, exclude: glob selectors of layers (``tree.select``).
      scope: ``"global"`` or ``"layer"`` for unstructured magnitude.
      signals: precomputed ``budgets.layer_signals`` (else computed when SEB weights are
        needed: ``method="seb"`` or ``seb=True``).
      plain_below: SEB final protocol (plain magnitude below this sparsity, e.g. 0.30).
      seb: weight SER/Hybrid/CAST's unstructured stage by the SEB layer weights ``w_l``
        (over-pruning score ``|W| / w_l`` and restore weight ``rho_l = w_l``); default 1.
      alpha_ser, exhaustive, max_patterns: CAST options (:func:`mpjax.pruning.cast.cast`).
      max_rows: calibration rows per layer used for the covariances, norms or Hessians.
      ser_kwargs: SER options (``over``, ``steps``, ``lr``, ``restore_value``).
      on_indivisible: ``"error"`` or ``"skip"`` for N:M layers with ``d_in % n != 0``.
      tokens: tokens per call for the MAC count of the report.
      jit: run the whole transformation under one ``jax.jit`` (the heavy kernels are
        jitted per layer shape anyway; one jit over a large model mostly adds compile time).
      cycle_kwargs: options of the cyclic procedure (``cycles``, ``fit_kwargs``,
        ``reg_kwargs``; :func:`mpjax.pruning.cyclic.cyclic_prune`).

    Returns:
      ``(params, masks, report)``; ``report`` holds ``method``, ``pattern``, ``target``,
      ``summary`` (:func:`mpjax.pruning.masks.summary`), ``skipped`` (``{path: reason}``), and
      method extras (``layer_weights``, ``cast_cost``, ``lowrank_rank``, ``lowrank_density``).

    Raises:
      ValueError: what :func:`pruner` raises, no layer selected, calibration data missing or
        not matching the layers, or ``jit=True`` for a method that cannot be traced.
    """
    m = get_method(method)
    k, n, s = parse_target(pattern, sparsity)
    _supported(m, pattern, n)
    if jit and not m.jittable:
        raise ValueError(f"method={method!r} cannot run under jax.jit; pass jit=False.")
    views = tree.select(params, include=include, exclude=exclude)
    if not views:
        raise ValueError(tree.empty_selection_message(params, include, exclude))
    report: dict[str, Any] = dict(method=method, pattern=pattern, target=s, skipped={})
    if n is not None:
        views, report["skipped"] = nm_views(views, n, on_indivisible)
    weights = None
    if (m.needs_layer_weights and n is None) or (seb and m.uses_layer_weights):
        signals = signals or budgets.layer_signals(params, views)
        weights = budgets.seb_weights(signals, s, plain_below=plain_below)
        report["layer_weights"] = weights
    covs = None
    if m.needs_calibration:
        if (calib_inputs is None) == (calib_covs is None):
            raise ValueError(f"method={method!r} needs calib_inputs={{path: X (rows, d_in)}} or "
                             "calib_covs={path: block covariances} (one of them).")
        covs = cast.layer_covariances(params, views, n, calib_inputs=calib_inputs,
                                      calib_covs=calib_covs, max_rows=max_rows)
        report["skipped"].update({p: "no calibration inputs" for p in views if p not in covs})
    post: dict[str, Any] = {}
    if m.needs_hessian or m.needs_input_norms:
        post = posttrain.prepare_calibration(params, views, hessian=m.needs_hessian,
                                             calib_inputs=calib_inputs,
                                             calib_hessians=calib_hessians, max_rows=max_rows)
        have = next(iter(post.values()))
        report["skipped"].update({p: "no calibration inputs" for p in views if p not in have})
    fn = pruner(method, pattern, s, views=views, scope=scope, budget=budget, **post,
                layer_weights=weights, grad_fn=grad_fn, covs=covs, ser_kwargs=ser_kwargs,
                cast_kwargs=dict(alpha_ser=alpha_ser, exhaustive=exhaustive,
                                 max_patterns=max_patterns),
                on_indivisible=on_indivisible, cycle_kwargs=cycle_kwargs)
    new_params, masks = jax.jit(fn)(params) if jit else fn(params)
    report["summary"] = summary(new_params, masks, tokens=tokens, views=views)
    if m.report is not None:
        request = PruneRequest(k=k, n=n, sparsity=s, views=views, covs=covs)
        report.update(m.report(request, params, new_params, masks, views))
    return new_params, masks, report
