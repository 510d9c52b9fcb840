"""Post-training baselines: Wanda, RIA and SparseGPT, calibrated on captured layer inputs.

Notation: a layer ``y = W x`` with ``W`` the ``(d_out, d_in)`` matrix view, ``X`` its
calibration inputs ``(N, d_in)`` (rows = tokens), ``||X_j||`` the l2 norm of input feature
``j`` over the ``N`` rows and ``H = X^T X``.

* **Wanda**: score ``S_ij = |W_ij| ||X_j||``; compared within each output row.
* **RIA**: ``S_ij = (|W_ij| / sum_k |W_kj| + |W_ij| / sum_k |W_ik|) ||X_j||^a``, ``a = 0.5``
  (relative importance within the input column and the output row); compared per row.
* **SparseGPT**: the OBS sweep of :mod:`mpjax.pruning.sparsegpt` (mask and weight update).

Per-row comparison: unstructured sparsity ``s`` removes the ``floor(s d_in)`` lowest scores of
every row (ties: the lower column index first); ``K:N`` keeps the top ``K`` of every group of
``N`` consecutive inputs of every row. Wanda and RIA change no kept weight.

Signals are prepared once, outside the transformations, so that those can be jitted:
:func:`input_norms` (Wanda, RIA) and :func:`layer_hessians` (SparseGPT), from the same
``calib_inputs = {path: X}`` that CAST uses. Inputs with NaN/Inf are refused
(:func:`check_calibration`). A layer without calibration data is left dense.

See `docs/method/posttrain.md`.

References:
  Sun et al., "A Simple and Effective Pruning Approach for Large Language Models" (Wanda),
  ICLR 2024; Zhang et al., "Plug-and-Play: An Efficient Post-training Pruning Method for
  Large Language Models" (RIA), ICLR 2024; Frantar & Alistarh, ICML 2023 (SparseGPT).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mpjax import tree
from mpjax.pruning.masks import remove_lowest
from mpjax.pruning.methods import PruneRequest, Transform
from mpjax.pruning.nm import nm_matrix_mask, nm_views
from mpjax.pruning.sparsegpt import sparsegpt_matrix

PyTree = Any
#: RIA's exponent of the input norm.
RIA_POWER = 0.5

__all__ = [
    "RIA_POWER",
    "build_ria",
    "build_sparsegpt",
    "build_wanda",
    "check_calibration",
    "check_hessians",
    "input_norms",
    "layer_hessians",
    "prepare_calibration",
    "ria_scores",
    "row_count",
    "row_masks",
    "wanda_scores",
]


# ----------------------------------------------------------------------------- signals
def _rows(X: Any, max_rows: int | None) -> jax.Array:
    X = jnp.asarray(X)
    X = X.reshape(-1, X.shape[-1]).astype(jnp.float32)
    return X if max_rows is None else X[:max_rows]


def check_calibration(calib_inputs: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first layer whose inputs are not finite rows.

    Args:
      calib_inputs: ``{path: X (rows, d_in)}`` (a 3-D ``(..., d_in)`` array is read as rows).

    Raises:
      ValueError: an ``X`` with fewer than 2 dimensions, no rows, or a NaN/Inf entry.
    """
    for p, X in calib_inputs.items():
        X = np.asarray(X)
        if X.ndim < 2 or X.shape[0] == 0:
            raise ValueError(
                f"{p}: calibration inputs of shape {X.shape}; expected "
                "(rows, d_in) with at least one row."
            )
        if not np.all(np.isfinite(X)):
            raise ValueError(
                f"{p}: calibration inputs contain NaN or Inf; check the capture "
                "(or the model's activations) for this layer."
            )


def layer_hessians(
    calib_inputs: Mapping[str, Any], max_rows: int | None = 4096
) -> dict[str, jax.Array]:
    """``{path: H = X^T X}`` in float32 from the first ``max_rows`` rows of each ``X``.

    ``H`` is a sum over rows, so Hessians of several captured batches add up.
    """
    check_calibration(calib_inputs)
    out = {}
    for p, X in calib_inputs.items():
        X = _rows(X, max_rows)
        out[p] = X.T @ X
    return out


def input_norms(
    calib_inputs: Mapping[str, Any], max_rows: int | None = 4096
) -> dict[str, jax.Array]:
    """``{path: ||X_j||}``: the l2 norm of every input feature over the first ``max_rows`` rows."""
    check_calibration(calib_inputs)
    return {p: jnp.sqrt(jnp.sum(_rows(X, max_rows) ** 2, axis=0)) for p, X in calib_inputs.items()}


def check_hessians(
    hessians: Mapping[str, Any], views: Mapping[str, tree.LayerView] | None = None
) -> None:
    """Raise ``ValueError`` naming the first ``H`` that is not a finite square Gram matrix
    (non-negative diagonal), ``(d_in, d_in)`` of its layer when ``views`` names it."""
    for p, H in hessians.items():
        shape = np.shape(H)
        d = views[p].d_in if views is not None and p in views else shape[0]
        if shape != (d, d):
            raise ValueError(
                f"{p}: Hessian of shape {shape}, expected {(d, d)}; "
                "pass H = X^T X of the layer's inputs."
            )
        Hn = np.asarray(H, np.float32)
        if not np.all(np.isfinite(Hn)) or np.any(np.diagonal(Hn) < 0):
            raise ValueError(
                f"{p}: Hessian has NaN/Inf or a negative diagonal; recompute "
                "H = X^T X from finite inputs."
            )


def prepare_calibration(
    params: PyTree,
    views: Mapping[str, tree.LayerView],
    *,
    hessian: bool,
    calib_inputs: Mapping[str, Any] | None = None,
    calib_hessians: Mapping[str, Any] | None = None,
    max_rows: int | None = 4096,
) -> dict[str, dict[str, jax.Array]]:
    """The signals of a post-training method for the layers of ``views``.

    Args:
      params: the parameters (calibration data must name their leaves).
      views: the layers to prune; data of other layers is ignored.
      hessian: return ``hessians`` (SparseGPT) instead of ``input_norms`` (Wanda, RIA).
      calib_inputs: ``{path: X (rows, d_in)}``, or
      calib_hessians: ``{path: X^T X}`` (norms are ``sqrt(diag H)``).
      max_rows: rows of ``calib_inputs`` used per layer.

    Returns:
      ``{"hessians": {...}}`` or ``{"input_norms": {...}}`` for the layers with data.

    Raises:
      ValueError: neither or both sources given, a path that is not a leaf of ``params``,
        non-finite inputs, or a Hessian of the wrong shape.
    """
    if (calib_inputs is None) == (calib_hessians is None):
        raise ValueError(
            "this method needs calib_inputs={path: X (rows, d_in)} or "
            "calib_hessians={path: X^T X} (one of them)."
        )
    given = calib_inputs if calib_inputs is not None else calib_hessians
    leaves = tree.flatten(params)
    unknown = [p for p in given if p not in views and p not in leaves]
    if unknown:
        raise ValueError(f"{unknown[0]}: calibration data names a leaf params does not have.")
    given = {p: x for p, x in given.items() if p in views}
    if calib_inputs is not None:
        bad = [p for p, X in given.items() if np.shape(X)[-1] != views[p].d_in]
        if bad:
            raise ValueError(
                f"{bad[0]}: calibration inputs have {np.shape(given[bad[0]])[-1]} "
                f"features, the layer has d_in={views[bad[0]].d_in}."
            )
        if hessian:
            return {"hessians": layer_hessians(given, max_rows)}
        return {"input_norms": input_norms(given, max_rows)}
    check_hessians(given, views)
    if hessian:
        return {"hessians": {p: jnp.asarray(H, jnp.float32) for p, H in given.items()}}
    return {
        "input_norms": {
            p: jnp.sqrt(jnp.diagonal(jnp.asarray(H, jnp.float32))) for p, H in given.items()
        }
    }


# ----------------------------------------------------------------------------- scores
def wanda_scores(W: jax.Array, norms: jax.Array) -> jax.Array:
    """``|W_ij| ||X_j||`` (float32), ``W`` in view layout ``(d_out, d_in)``."""
    return jnp.abs(W.astype(jnp.float32)) * norms[None, :]


def _safe_div(a: jax.Array, b: jax.Array) -> jax.Array:
    ok = b > 0
    return jnp.where(ok, a / jnp.where(ok, b, 1.0), 0.0)


def ria_scores(W: jax.Array, norms: jax.Array, power: float = RIA_POWER) -> jax.Array:
    """``(|W_ij| / sum_k |W_kj| + |W_ij| / sum_k |W_ik|) ||X_j||^a`` (float32).

    A column or row with no weight contributes 0 (safe division).
    """
    A = jnp.abs(W.astype(jnp.float32))
    rel = _safe_div(A, jnp.sum(A, axis=0, keepdims=True)) + _safe_div(
        A, jnp.sum(A, axis=1, keepdims=True)
    )
    return rel * norms[None, :] ** power


def row_count(sparsity: float, d_in: int) -> int:
    """Entries removed per row: ``floor(s d_in)`` (with ``1e-9`` slack for float rounding).

    Examples:
      >>> row_count(0.29, 100), row_count(0.5, 7)
      (29, 3)
    """
    return int(math.floor(float(sparsity) * d_in + 1e-9))


@partial(jax.jit, static_argnames=("count",))
def row_masks(score: jax.Array, count: int) -> jax.Array:
    """Keep-mask removing the ``count`` lowest scores of every row (ties: lower index first)."""
    return jax.vmap(remove_lowest, in_axes=(0, None))(score, jnp.int32(count))


# ----------------------------------------------------------------------------- transforms
def _layers(req: PruneRequest, params: PyTree, signal: Mapping[str, Any]):
    """The layers a request prunes: calibrated, N:M-divisible, and budgeted if a budget is set."""
    views = {p: v for p, v in req.views_of(params).items() if p in signal}
    if req.n is not None:
        views, _ = nm_views(views, req.n, req.on_indivisible)
        return views, {}
    if req.budget is None:
        return views, dict.fromkeys(views, req.sparsity)
    per = {p: s for p, s in tree.flatten(req.budget).items() if s is not None}
    return {p: v for p, v in views.items() if p in per}, per


def _build_scored(req: PruneRequest, score_fn: Callable[..., jax.Array]) -> Transform:
    def transform(params: PyTree) -> tuple[PyTree, PyTree]:
        views, per = _layers(req, params, req.input_norms)
        mats = tree.matrices(params, views)
        new_w, new_m = {}, {}
        for p, v in views.items():
            score = score_fn(mats[p], req.input_norms[p])
            if req.n is not None:
                keep = nm_matrix_mask(score, req.k, req.n)
            else:
                keep = row_masks(score, row_count(per[p], v.d_in))
            new_w[p] = jnp.where(keep, mats[p], jnp.zeros((), mats[p].dtype))
            new_m[p] = tree.from_matrix(keep, v)
        return tree.replace_matrices(params, new_w, views), tree.unflatten_like(params, new_m)

    return transform


def build_wanda(req: PruneRequest) -> Transform:
    """Wanda: per-row lowest ``|W_ij| ||X_j||``; ``K:N`` by the same score."""
    return _build_scored(req, wanda_scores)


def build_ria(req: PruneRequest) -> Transform:
    """RIA: per-row lowest relative importance times ``||X_j||^0.5``; ``K:N`` alike."""
    return _build_scored(req, ria_scores)


def build_sparsegpt(req: PruneRequest) -> Transform:
    """SparseGPT on every layer with a Hessian (:func:`mpjax.pruning.sparsegpt.sparsegpt_matrix`)."""

    def transform(params: PyTree) -> tuple[PyTree, PyTree]:
        views, per = _layers(req, params, req.hessians)
        check_hessians({p: req.hessians[p] for p in views}, views)
        mats = tree.matrices(params, views)
        new_w, new_m = {}, {}
        for p, v in views.items():
            res = sparsegpt_matrix(
                mats[p],
                req.hessians[p],
                k=req.k,
                n=req.n,
                sparsity=jnp.float32(per.get(p, req.sparsity)),
            )
            new_w[p], new_m[p] = res.weights, tree.from_matrix(res.mask, v)
        return tree.replace_matrices(params, new_w, views), tree.unflatten_like(params, new_m)

    return transform
