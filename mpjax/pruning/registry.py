"""Pruning as pytree transformations: one entry point over every method.

Every method is a pure transformation ``params -> (params, masks)`` that keeps the tree
structure and dtypes (see :mod:`mpjax.pruning.masks` for the masks contract). :func:`pruner` builds
that transformation once the data-dependent signals are prepared (spectral fits, calibration
covariances, a gradient function), so it can be ``jax.jit``-ed and reused without
recompiling; :func:`prune` is the eager convenience wrapper that prepares the signals, runs
the (jitted) transformation and adds a report.

Methods and patterns:

============  =================================  ========================================
method        ``"unstructured"``                 ``"K:N"``
============  =================================  ========================================
magnitude     smallest ``|W|`` (global scope by  top-k ``|W|`` per group of ``n`` inputs
              default; ``scope="layer"``)
seb           global ``|W| / w_l`` (SEB weights)  same as magnitude K:N (``w_l`` is
                                                  constant within a row group)
ser           prune–restore (needs ``grad_fn``)   error: use ``cast``
hybrid        magnitude <= 0.20, SER above        error: use ``cast``
cast          error: CAST is N:M only             CAST projection of the SER/SEB mask
lowrank       rank with ``r (d_out + d_in) <=    error
              (1 - S) d_out d_in``; masks None
============  =================================  ========================================

A ``budget`` pytree (per-layer sparsities, :mod:`mpjax.pruning.budgets`) overrides the global
criterion for ``magnitude``: each layer is pruned by magnitude to its own sparsity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from mpjax import tree
from mpjax.pruning import budgets as budget_lib
from mpjax.pruning import cast as cast_lib
from mpjax.pruning import masks as masks_lib
from mpjax.pruning import ser as ser_lib
from mpjax.pruning.lowrank import (
    Factors,
    LowRankInfo,
    factorization_saves,
    factorize,
    lowrank,
    rank_for_density,
    spectral_truncate,
    truncate_to_rank,
    truncation_rank,
)

PyTree = Any
Transform = Callable[[PyTree], tuple[PyTree, PyTree]]

METHODS = ("magnitude", "seb", "ser", "hybrid", "cast", "lowrank")

__all__ = [
    "METHODS", "Factors", "LowRankInfo", "factorization_saves", "factorize", "lowrank",
    "parse_target", "prune", "pruner", "rank_for_density", "spectral_truncate",
    "truncate_to_rank", "truncation_rank",
]


def parse_target(pattern: str, sparsity: float | None) -> tuple[int | None, int | None, float]:
    """``(k, n, sparsity)`` from a pattern and an optional sparsity.

    ``"K:N"`` implies ``sparsity = 1 - K/N``; passing a different sparsity is an error.

    Examples:
      >>> parse_target("2:4", None)
      (2, 4, 0.5)
    """
    if pattern == "unstructured":
        if sparsity is None:
            raise ValueError("sparsity is required for pattern='unstructured'.")
        masks_lib.check_sparsity(sparsity)
        return None, None, float(sparsity)
    k, n = masks_lib.parse_pattern(pattern)
    implied = 1.0 - k / n
    if sparsity is not None and abs(float(sparsity) - implied) > 1e-9:
        raise ValueError(
            f"sparsity={sparsity} contradicts pattern={pattern!r} (which implies {implied:g}); "
            "drop sparsity= or make them agree."
        )
    return k, n, implied


def pruner(
    method: str,
    pattern: str = "unstructured",
    sparsity: float | None = None,
    *,
    views: Mapping[str, tree.LayerView] | None = None,
    scope: str = "global",
    budget: PyTree | None = None,
    layer_weights: Mapping[str, float] | None = None,
    grad_fn: ser_lib.GradFn | None = None,
    covs: Mapping[str, Any] | None = None,
    ser_kwargs: Mapping[str, Any] | None = None,
    cast_kwargs: Mapping[str, Any] | None = None,
    on_indivisible: str = "error",
) -> Transform:
    """The pure transformation ``params -> (params, masks)`` of one method.

    Signals are inputs, not computed here: ``layer_weights`` (SEB ``w_l``, see
    :func:`mpjax.pruning.budgets.seb_weights`), ``grad_fn`` (SER), ``covs`` (CAST block
    covariances, :func:`mpjax.pruning.cast.covariances`). The returned function is traceable: wrap
    it in ``jax.jit``.

    Raises:
      ValueError: unknown method, method/pattern combinations that do not exist, missing
        signals, sparsity outside ``[0, 1)``.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}; expected one of {METHODS}.")
    k, n, s = parse_target(pattern, sparsity)
    structured = k is not None
    if structured and method in ("ser", "hybrid", "lowrank"):
        raise ValueError(f"method={method!r} has no {pattern} form; use method='cast' "
                         "(or 'magnitude') for N:M.")
    if not structured and method == "cast":
        raise ValueError("method='cast' is an N:M projection; pass pattern='K:N'.")
    if method in ("ser", "hybrid") and grad_fn is None:
        raise ValueError(f"method={method!r} needs grad_fn(params) -> grads.")
    if method == "seb" and not structured and layer_weights is None:
        raise ValueError("method='seb' needs layer_weights (budget.seb_weights).")
    if budget is not None and method != "magnitude":
        raise ValueError(f"budget= is used by method='magnitude' only, not {method!r}.")
    if method == "cast" and covs is None:
        raise ValueError("method='cast' needs covs (cast.covariances(calib_inputs, n)).")

    def sel(params: PyTree) -> Mapping[str, tree.LayerView]:
        return tree.select(params) if views is None else views

    def transform(params: PyTree) -> tuple[PyTree, PyTree]:
        v = sel(params)
        if method == "lowrank":
            out, _ = lowrank(params, density=1.0 - s, views=v)
            return out, tree.unflatten_like(params, {})
        if structured and method in ("magnitude", "seb"):
            m = masks_lib.nm_masks(params, k, n, views=v, on_indivisible=on_indivisible)
            return masks_lib.apply_masks(params, m), m
        if method == "magnitude":
            m = (budget_lib.masks_from_budget(params, budget) if budget is not None else
                 masks_lib.magnitude_masks(params, s, scope=scope, views=v))
            return masks_lib.apply_masks(params, m), m
        if method == "seb":
            m = budget_lib.seb_masks(params, s, layer_weights, v)
            return masks_lib.apply_masks(params, m), m
        if method == "ser":
            p, m, _ = ser_lib.ser(params, s, grad_fn, layer_weights=layer_weights, views=v,
                                  **dict(ser_kwargs or {}))
            return p, m
        if method == "hybrid":
            return ser_lib.hybrid(params, s, grad_fn, layer_weights=layer_weights, views=v,
                                  **dict(ser_kwargs or {}))
        # cast: unstructured SER (or SEB / magnitude) at 1 - k/n, then the N:M projection.
        cv = {p: w for p, w in v.items() if p in covs}
        cv, _ = masks_lib.nm_views(cv, n, on_indivisible)
        if grad_fn is not None:
            sp, sm, _ = ser_lib.ser(params, s, grad_fn, layer_weights=layer_weights, views=cv,
                                    **dict(ser_kwargs or {}))
        else:
            sm = masks_lib.magnitude_masks(params, s, scope="global", views=cv,
                                           layer_weights=layer_weights)
            sp = masks_lib.apply_masks(params, sm)
        p, m, _ = cast_lib.cast(params, k, n, covs, ser_params=sp, ser_masks=sm, views=cv,
                                **dict(cast_kwargs or {}))
        return p, m

    return transform


def prune(
    params: PyTree,
    method: str,
    pattern: str = "unstructured",
    sparsity: float | None = None,
    *,
    calib_inputs: Mapping[str, Any] | None = None,
    grad_fn: ser_lib.GradFn | None = None,
    budget: PyTree | None = None,
    calib_covs: Mapping[str, Any] | None = None,
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
) -> tuple[PyTree, PyTree, dict[str, Any]]:
    """Prune ``params`` with one method: ``(params, masks, report)``.

    Args:
      params: parameter pytree (Linen dict, ``nnx.State`` or torch-layout flat dict).
      method: one of :data:`METHODS`.
      pattern: ``"unstructured"`` or ``"K:N"`` (sparsity ``1 - K/N``).
      sparsity: target in ``[0, 1)``; optional for ``"K:N"`` (must then agree).
      calib_inputs: ``{path: X (rows, d_in)}`` captured layer inputs (CAST; layers without
        inputs are left dense). Only the first ``max_rows`` rows are used.
      grad_fn: ``params -> grads`` for SER/Hybrid (and CAST's SER source, if given).
      budget: per-layer sparsity pytree (``magnitude`` only).
      calib_covs: instead of ``calib_inputs``, precomputed block covariances
        ``{path: (d_in/n, n, n)}`` (:func:`mpjax.pruning.cast.block_covariances`, or a running sum
        of ``X_g^T X_g / T`` over captured batches), so inputs need not be kept in memory.
      include, exclude: glob selectors of layers (``tree.select``).
      scope: ``"global"`` or ``"layer"`` for unstructured magnitude.
      signals: precomputed ``budget.layer_signals`` (else computed when SEB weights are
        needed: ``method="seb"`` or ``seb=True``).
      plain_below: SEB final protocol (plain magnitude below this sparsity, e.g. 0.30).
      seb: weight SER/Hybrid/CAST's unstructured stage by the SEB layer weights ``w_l``
        (over-pruning score ``|W| / w_l`` and restore weight ``rho_l = w_l``); default 1.
      alpha_ser, exhaustive, max_patterns: CAST options (:func:`mpjax.pruning.cast.cast`).
      ser_kwargs: SER options (``over``, ``steps``, ``lr``, ``restore_value``).
      on_indivisible: ``"error"`` or ``"skip"`` for N:M layers with ``d_in % n != 0``.
      tokens: tokens per call for the MAC count of the report.
      jit: run the whole transformation under one ``jax.jit`` (the heavy kernels are
        jitted per layer shape anyway; one jit over a large model mostly adds compile time).

    Returns:
      ``(params, masks, report)``; ``report`` holds ``method``, ``pattern``, ``target``,
      ``summary`` (:func:`mpjax.pruning.masks.summary`), ``skipped`` (``{path: reason}``), and
      method extras (``layer_weights``, ``cast_cost``, ``lowrank_rank``).
    """
    k, n, s = parse_target(pattern, sparsity)
    views = tree.select(params, include=include, exclude=exclude)
    if not views:
        raise ValueError("no weight matrices selected; check include=/exclude=.")
    report: dict[str, Any] = dict(method=method, pattern=pattern, target=s, skipped={})
    if n is not None:
        views, report["skipped"] = masks_lib.nm_views(views, n, on_indivisible)
    weights = None
    if (method == "seb" and k is None) or (seb and method in ("ser", "hybrid", "cast")):
        signals = signals or budget_lib.layer_signals(params, views)
        weights = budget_lib.seb_weights(signals, s, plain_below=plain_below)
        report["layer_weights"] = weights
    covs = None
    if method == "cast":
        if (calib_inputs is None) == (calib_covs is None):
            raise ValueError("method='cast' needs calib_inputs={path: X (rows, d_in)} or "
                             "calib_covs={path: block covariances} (one of them).")
        given = calib_inputs if calib_inputs is not None else calib_covs
        unknown = [p for p in given if p not in views and p not in tree.flatten(params)]
        if unknown:
            raise ValueError(f"{unknown[0]}: calibration data names a leaf params does not have.")
        if calib_covs is not None:
            covs = {p: c for p, c in calib_covs.items() if p in views}
            bad = [p for p, c in covs.items() if c.shape != (views[p].d_in // n, n, n)]
            if bad:
                raise ValueError(f"{bad[0]}: calib_covs shape {covs[bad[0]].shape}, expected "
                                 f"{(views[bad[0]].d_in // n, n, n)}.")
        else:
            covs = cast_lib.covariances(
                {p: x for p, x in calib_inputs.items() if p in views}, n, max_rows)
        report["skipped"].update({p: "no calibration inputs" for p in views if p not in covs})
    fn = pruner(method, pattern, s, views=views, scope=scope, budget=budget,
                layer_weights=weights, grad_fn=grad_fn, covs=covs, ser_kwargs=ser_kwargs,
                cast_kwargs=dict(alpha_ser=alpha_ser, exhaustive=exhaustive,
                                 max_patterns=max_patterns),
                on_indivisible=on_indivisible)
    new_params, masks = jax.jit(fn)(params) if jit else fn(params)
    report["summary"] = masks_lib.summary(new_params, masks, tokens=tokens, views=views)
    if method == "cast":
        dense, out = tree.matrices(params, views), tree.matrices(new_params, views)
        mflat = tree.flatten(masks)
        # Cost of what each method removes from the dense layer: r = W_dense - W_pruned.
        report["cast_cost"] = {
            p: dict(cast=float(cast_lib.calibration_cost(
                        dense[p] - out[p], np.zeros(dense[p].shape, bool), covs[p])),
                    magnitude=float(cast_lib.calibration_cost(
                        dense[p], masks_lib.nm_matrix_mask(np.abs(dense[p]), k, n), covs[p])))
            for p in covs if p in mflat
        }
    if method == "lowrank":
        report["lowrank_rank"] = {p: rank_for_density(v.shape, 1.0 - s) for p, v in views.items()}
        fp = sum(r * (views[p].d_out + views[p].d_in) for p, r in report["lowrank_rank"].items())
        report["lowrank_density"] = fp / sum(v.d_out * v.d_in for v in views.values())
    return new_params, masks, report
