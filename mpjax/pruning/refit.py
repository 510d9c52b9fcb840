"""Reconstruction: refit the kept weights of any mask so the layer matches its dense outputs.

For a layer ``y = W x`` with mask ``M`` and calibration inputs ``X`` (``H = X^T X``), each
output row ``i`` with kept set ``K_i`` solves the damped least-squares problem

    min_w ||X_K w - X W_i||^2 + lambda ||w - W_iK||^2
    <=>  (H_KK + lambda I) w = H_K: W_i + lambda W_iK,     lambda = damp * mean(diag H),

and keeps 0 on the pruned entries. The damping pulls towards the dense weights (not towards
zero), so a row with nothing pruned is returned unchanged and a singular ``H_KK`` (dead or
collinear inputs) still has one answer. The sequential form (:func:`reconstruct_sequential`)
fits each layer, in forward order, on the inputs ``X_p`` of the model pruned and refit so far
against the dense model's outputs: ``(X_p^T X_p)_KK w + lambda w = (X_p^T X_d W_i)_K +
lambda W_iK``.

Solver: preconditioned conjugate gradients on all rows at once (one ``(d_out, d_in) x
(d_in, d_in)`` product per step, Jacobi preconditioner ``diag(H)_K + lambda``), from the given
pruned weights, until every row's residual is below ``tol`` times its right-hand side or
``max_iter`` steps. CG minimises exactly the objective above over a growing subspace, so the
output error falls at every step. As a final guard a row keeps its given weights when the
refit does not lower its calibration output error; the number of such rows is reported.

Errors are relative output errors ``||X W_hat^T - X W^T||_F / ||X W^T||_F`` (sequential:
``||X_p W_hat^T - X_d W^T||_F / ||X_d W^T||_F``), before (given pruned weights) and after.

See `docs/method/posttrain.md` (reconstruction).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from mpjax import tree
from mpjax.pruning.masks import apply_masks
from mpjax.pruning.posttrain import check_calibration, check_hessians, layer_hessians

PyTree = Any
Capture = Callable[[PyTree], Mapping[str, Any]]

__all__ = ["RefitError", "masked_refit", "reconstruct", "reconstruct_sequential"]


class RefitError(NamedTuple):
    """Per-layer outcome of a reconstruction.

    Attributes:
      before: relative calibration output error of the given pruned weights.
      after: the same after the refit (never above ``before``).
      iterations: conjugate-gradient steps taken.
      residual: largest relative residual over the rows at the end.
      kept_rows: rows whose refit was not better, so their given weights were kept.
    """

    before: float
    after: float
    iterations: int
    residual: float
    kept_rows: int


def _safe_div(a: jax.Array, b: jax.Array) -> jax.Array:
    ok = b != 0
    return jnp.where(ok, a / jnp.where(ok, b, 1.0), 0.0)


@jax.jit
def masked_refit(
    A: jax.Array,
    B: jax.Array,
    mask: jax.Array,
    W0: jax.Array,
    lam: jax.Array,
    tol: float = 1e-5,
    max_iter: int = 256,
):
    """Solve ``(A_KK + lam I) w_i = B_iK`` for every row ``i`` (``K`` = its kept set).

    Preconditioned CG on all rows at once; entries outside the mask stay 0.

    Args:
      A: ``(d_in, d_in)`` symmetric positive semi-definite.
      B: ``(d_out, d_in)`` right-hand sides (rows).
      mask: bool ``(d_out, d_in)`` kept entries.
      W0: ``(d_out, d_in)`` starting point (used on the mask only).
      lam: damping ``> 0``.
      tol: relative residual ``||r_i|| / ||B_iK||`` at which every row has converged.
      max_iter: the most CG steps.

    Returns:
      ``(W, iterations, residual)`` with ``W`` float32, zero off the mask.
    """
    M = mask.astype(jnp.float32)
    A = A.astype(jnp.float32)
    Bm = M * B.astype(jnp.float32)
    dg = M * jnp.diagonal(A)[None, :] + lam

    def op(V):
        return M * (V @ A) + lam * V

    X = M * W0.astype(jnp.float32)
    R = Bm - op(X)
    Z = R / dg
    bnorm = jnp.linalg.norm(Bm, axis=1)

    def resid(R):
        return jnp.max(_safe_div(jnp.linalg.norm(R, axis=1), bnorm))

    def cond(state):
        it, _, R, _, _, _ = state
        return (it < max_iter) & (resid(R) > tol)

    def body(state):
        it, X, R, Z, P, rz = state
        AP = op(P)
        alpha = _safe_div(rz, jnp.sum(P * AP, axis=1))
        X = X + alpha[:, None] * P
        R = R - alpha[:, None] * AP
        Z = R / dg
        rz_new = jnp.sum(R * Z, axis=1)
        P = Z + _safe_div(rz_new, rz)[:, None] * P
        return it + 1, X, R, Z, P, rz_new

    state = (jnp.int32(0), X, R, Z, Z, jnp.sum(R * Z, axis=1))
    it, X, R, _, _, _ = jax.lax.while_loop(cond, body, state)
    return M * X, it, resid(R)


@jax.jit
def _refit_layer(
    W: jax.Array,
    Wp: jax.Array,
    mask: jax.Array,
    H: jax.Array,
    damp: float,
    tol: float,
    max_iter: int,
):
    """One-shot refit of one matrix view; errors in the exact ``(W_hat - W) H (W_hat - W)^T``
    form (no cancellation)."""
    W = W.astype(jnp.float32)
    Wp = jnp.where(mask, Wp.astype(jnp.float32), 0.0)
    H = H.astype(jnp.float32)
    lam = damp * jnp.mean(jnp.diagonal(H))
    X, it, res = masked_refit(H, W @ H + lam * W, mask, Wp, lam, tol, max_iter)

    def rows(V):
        D = V - W
        return jnp.maximum(jnp.sum((D @ H) * D, axis=1), 0.0)

    e0, e1 = rows(Wp), rows(X)
    worse = e1 >= e0
    out = jnp.where(worse[:, None], Wp, X)
    total = jnp.maximum(jnp.sum((W @ H) * W), jnp.finfo(jnp.float32).tiny)
    err = lambda e: jnp.sqrt(jnp.sum(e) / total)  # noqa: E731
    return out, err(e0), err(jnp.minimum(e0, e1)), it, res, jnp.sum(worse & (e0 > 0))


def _layers(params: PyTree, masks: PyTree, have: Mapping[str, Any]):
    flat = tree.flatten(masks)
    views = {p: v for p, v in tree.select(params).items() if p in flat and p in have}
    return views, flat


def reconstruct(
    params: PyTree,
    masks: PyTree,
    *,
    pruned: PyTree | None = None,
    calib_inputs: Mapping[str, Any] | None = None,
    hessians: Mapping[str, Any] | None = None,
    damp: float = 0.01,
    max_rows: int | None = 4096,
    tol: float = 1e-5,
    max_iter: int = 256,
) -> tuple[PyTree, dict[str, RefitError]]:
    """Refit the kept weights of every masked layer to the dense layer's calibration outputs.

    Args:
      params: the dense parameters (the targets ``X W^T``).
      masks: masks pytree of any method (``None`` leaves are left alone).
      pruned: the pruned parameters to start from and compare with (e.g. SparseGPT's
        updated weights); default ``apply_masks(params, masks)``.
      calib_inputs: ``{path: X (rows, d_in)}`` (first ``max_rows`` rows), or
      hessians: ``{path: X^T X}``. Masked layers without either are left as given.
      damp: relative damping, ``lambda = damp * mean(diag H)``.
      max_rows: rows of ``calib_inputs`` used per layer.
      tol, max_iter: stopping rule of :func:`masked_refit`.

    Returns:
      ``(params, {path: RefitError})``: ``pruned`` with the refit layers replaced.

    Raises:
      ValueError: neither or both of ``calib_inputs`` and ``hessians``, non-finite inputs,
        a Hessian of the wrong shape, or masks that do not fit ``params``.
    """
    if (calib_inputs is None) == (hessians is None):
        raise ValueError(
            "reconstruct needs calib_inputs={path: X (rows, d_in)} or "
            "hessians={path: X^T X} (one of them)."
        )
    pruned = apply_masks(params, masks) if pruned is None else apply_masks(pruned, masks)
    given = calib_inputs if calib_inputs is not None else hessians
    views, flat = _layers(params, masks, given)
    if calib_inputs is not None:
        hessians = layer_hessians({p: calib_inputs[p] for p in views}, max_rows)
    check_hessians({p: hessians[p] for p in views}, views)
    dense, start = tree.matrices(params, views), tree.matrices(pruned, views)
    new, errors = {}, {}
    for p, v in views.items():
        M = tree.to_matrix(jnp.asarray(flat[p]), v)
        out, e0, e1, it, res, kept = _refit_layer(
            dense[p], start[p], M, hessians[p], damp, tol, max_iter
        )
        new[p] = out.astype(start[p].dtype)
        errors[p] = RefitError(float(e0), float(e1), int(it), float(res), int(kept))
    return tree.replace_matrices(pruned, new, views), errors


@jax.jit
def _refit_sequential(W, Wp, mask, Xp, Xd, damp, tol, max_iter):
    """Sequential refit of one matrix view from pruned-model and dense-model inputs."""
    W = W.astype(jnp.float32)
    Wp = jnp.where(mask, Wp.astype(jnp.float32), 0.0)
    A = Xp.T @ Xp
    lam = damp * jnp.mean(jnp.diagonal(A))
    B = (W @ Xd.T) @ Xp + lam * W
    X, it, res = masked_refit(A, B, mask, Wp, lam, tol, max_iter)
    target = Xd @ W.T
    rows = lambda V: jnp.sum((Xp @ V.T - target) ** 2, axis=0)  # noqa: E731
    e0, e1 = rows(Wp), rows(X)
    worse = e1 >= e0
    out = jnp.where(worse[:, None], Wp, X)
    total = jnp.maximum(jnp.sum(target**2), jnp.finfo(jnp.float32).tiny)
    err = lambda e: jnp.sqrt(jnp.sum(e) / total)  # noqa: E731
    return out, err(e0), err(jnp.minimum(e0, e1)), it, res, jnp.sum(worse & (e0 > 0))


def _groups(order: Sequence[str | Sequence[str]] | None, paths: Sequence[str]):
    if order is None:
        return [[p] for p in paths]
    return [[g] if isinstance(g, str) else list(g) for g in order]


def reconstruct_sequential(
    params: PyTree,
    masks: PyTree,
    capture: Capture,
    *,
    pruned: PyTree | None = None,
    order: Sequence[str | Sequence[str]] | None = None,
    damp: float = 0.01,
    max_rows: int | None = 4096,
    tol: float = 1e-5,
    max_iter: int = 256,
) -> tuple[PyTree, dict[str, RefitError]]:
    """Refit layer after layer, each on the inputs of the model pruned and refit so far.

    Args:
      params: the dense parameters.
      masks: masks pytree of any method.
      capture: ``capture(params) -> {path: X (rows, d_in)}``, the inputs every layer sees
        when the model with ``params`` runs on the calibration set (same rows each call).
      pruned: the pruned parameters to start from; default ``apply_masks(params, masks)``.
      order: layer paths in forward order, or groups of paths fed by one forward pass
        (e.g. ``[["q", "k", "v"], "out", ...]``); default the key order of
        ``capture(params)`` (a capture that records inputs as the model runs gives the
        forward order). Only masked layers are refit.
      damp, max_rows, tol, max_iter: as in :func:`reconstruct`.

    Returns:
      ``(params, {path: RefitError})`` with errors measured against the dense outputs.

    Raises:
      ValueError: a path of ``order`` that ``capture`` does not return, or non-finite inputs.
    """
    current = apply_masks(params, masks) if pruned is None else apply_masks(pruned, masks)
    dense_in = dict(capture(params))
    check_calibration(dense_in)
    views, flat = _layers(params, masks, dense_in)
    missing = [p for g in _groups(order, list(dense_in)) for p in g if p not in dense_in]
    if missing:
        raise ValueError(f"{missing[0]}: in order= but not returned by capture(params).")
    dense = tree.matrices(params, views)
    errors = {}
    for group in _groups(order, list(dense_in)):
        group = [p for p in group if p in views]
        if not group:
            continue
        seen = dict(capture(current))
        check_calibration({p: seen[p] for p in group})
        start = tree.matrices(current, {p: views[p] for p in group})
        new = {}
        for p in group:
            Xp = jnp.asarray(seen[p], jnp.float32).reshape(-1, views[p].d_in)[:max_rows]
            Xd = jnp.asarray(dense_in[p], jnp.float32).reshape(-1, views[p].d_in)[:max_rows]
            M = tree.to_matrix(jnp.asarray(flat[p]), views[p])
            out, e0, e1, it, res, kept = _refit_sequential(
                dense[p], start[p], M, Xp, Xd, damp, tol, max_iter
            )
            new[p] = out.astype(start[p].dtype)
            errors[p] = RefitError(float(e0), float(e1), int(it), float(res), int(kept))
        current = tree.replace_matrices(current, new, {p: views[p] for p in group})
    return current, errors
