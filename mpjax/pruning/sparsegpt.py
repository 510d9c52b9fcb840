"""SparseGPT: one-shot pruning with an OBS weight update, one layer at a time.

For a layer ``y = W x`` with calibration inputs ``X`` (rows = tokens) and ``H = X^T X``:

1. an input ``j`` that never fires (``H_jj = 0``) gets ``H_jj = 1`` and ``W_:j = 0``;
2. damping ``H += lambda I`` with ``lambda = damp * mean(diag H)`` (``damp = 0.01``);
3. ``U`` = the upper Cholesky factor of ``H^-1`` (``H^-1 = U^T U``);
4. columns are swept in blocks of ``B = 128``: for block ``[i1, i2)``, ``W1 = W[:, i1:i2]``,
   ``U1 = U[i1:i2, i1:i2]``, ``d = diag(U1)``. The mask comes from the score
   ``W1^2 / d^2`` of the weights *as updated so far*: unstructured, one threshold over the
   block; ``K:N``, at each group start the ``N - K`` smallest of the group in every row.
   For each column ``c``: ``q = W1[:, c]`` with the pruned entries zeroed,
   ``e = (W1[:, c] - q) / U1[c, c]``, ``W1[:, c:] -= e U1[c, c:]``; after the block
   ``W[:, i2:] -= E U[i1:i2, i2:]`` with ``E`` the stacked ``e``.

Counts: unstructured removes ``round(s * d_out * c)`` entries among the first ``c`` columns
at every block end (block ``b`` removes the difference), so each block removes within one
entry of the share ``s`` and the layer removes exactly ``round(s * d_out * d_in)`` (the mpjax
count, :func:`mpjax.pruning.masks.n_remove`). Ties: the lower column index goes first.
For ``K:N`` the block width is rounded down to a multiple of ``N`` so no group straddles two
blocks. Everything runs in float32; the result has the dtype of ``W``.

If the Cholesky factorisation fails in float32 (an ``H`` that is indefinite by round-off),
the damping is raised tenfold, up to :data:`MAX_DAMPING_TRIES` times; past that ``H`` is
replaced by its diagonal, so the weights are never NaN. :func:`damped_inverse_factor`
returns the damping it used.

See `docs/method/posttrain.md` (SparseGPT).

References:
  Frantar & Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned in
  One-Shot", ICML 2023, Algorithm 1.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mpjax.pruning.masks import n_remove, remove_lowest
from mpjax.pruning.nm import nm_matrix_mask

#: Column block width of the sweep.
BLOCK = 128
#: Tenfold damping increases tried when the Cholesky factorisation fails.
MAX_DAMPING_TRIES = 8

__all__ = [
    "BLOCK",
    "MAX_DAMPING_TRIES",
    "SparseGPTResult",
    "damped_inverse_factor",
    "sparsegpt_matrix",
]


class SparseGPTResult(NamedTuple):
    """Outcome of :func:`sparsegpt_matrix` (view layout ``(d_out, d_in)``).

    Attributes:
      weights: the updated weights, zero where pruned, in the dtype of the input.
      mask: bool keep-mask.
      damping: the ``lambda`` added to ``diag H`` (``damp * mean(diag H)``, or more when the
        factorisation needed it; ``inf`` when ``H`` was replaced by its diagonal).
    """

    weights: jax.Array
    mask: jax.Array
    damping: jax.Array


def _upper_inverse_factor(H: jax.Array) -> jax.Array:
    """Upper ``U`` with ``H^-1 = U^T U`` from one Cholesky factorisation.

    With ``J`` the order reversal, ``J H J = L L^T`` gives ``H^-1 = J L^-T L^-1 J``, so
    ``U = J L^-1 J`` (upper, since ``L^-1`` is lower): no explicit inverse of ``H``.
    """
    L = jnp.linalg.cholesky(H[::-1, ::-1])
    Linv = jax.scipy.linalg.solve_triangular(L, jnp.eye(H.shape[0], dtype=H.dtype), lower=True)
    return Linv[::-1, ::-1]


@jax.jit
def damped_inverse_factor(
    H: jax.Array, damp: float = 0.01
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(U, lambda, dead)``: the upper factor of ``(H' + lambda I)^-1`` and the damping.

    ``H'`` is ``H`` with ``H_jj = 1`` for the dead inputs (``H_jj = 0``), and
    ``lambda = damp * mean(diag H') * 10^t`` for the first ``t`` whose factorisation is
    finite; after :data:`MAX_DAMPING_TRIES` failures ``H'`` is replaced by its diagonal
    (and ``lambda`` reported as ``inf``).

    Args:
      H: ``(d_in, d_in)`` Gram matrix ``X^T X`` (symmetric, ``diag >= 0``).
      damp: the relative damping (0.01).

    Returns:
      ``(U, lambda, dead)`` with ``U`` upper triangular float32 and ``dead`` the bool
      ``(d_in,)`` mask of inputs that never fire.
    """
    H = jnp.asarray(H, jnp.float32)
    diag = jnp.diagonal(H)
    dead = diag == 0
    H = H + jnp.diag(dead.astype(jnp.float32))
    base = damp * jnp.mean(jnp.diagonal(H))
    eye = jnp.eye(H.shape[0], dtype=jnp.float32)

    def attempt(t):
        lam = base * 10.0 ** t.astype(jnp.float32)
        return _upper_inverse_factor(H + lam * eye), lam

    def cond(state):
        t, U, _ = state
        return (t < MAX_DAMPING_TRIES) & ~jnp.all(jnp.isfinite(U))

    def body(state):
        t, _, _ = state
        U, lam = attempt(t + 1)
        return t + 1, U, lam

    U, lam = attempt(jnp.int32(0))
    t, U, lam = jax.lax.while_loop(cond, body, (jnp.int32(0), U, lam))
    ok = jnp.all(jnp.isfinite(U))
    fallback = jnp.diag(1.0 / jnp.sqrt(jnp.diagonal(H) + base))
    return jnp.where(ok, U, fallback), jnp.where(ok, lam, jnp.inf), dead


def _block_mask(W1: jax.Array, d: jax.Array, count: int) -> jax.Array:
    """Unstructured keep-mask of a block: remove the ``count`` smallest ``W1^2 / d^2``."""
    return remove_lowest((W1 / d[None, :]) ** 2, count)


def _sweep(W1, U1, M1, k, n):
    """The column sweep of one block; for ``K:N`` (``n`` set) the mask is chosen per group.

    Returns ``(Q1, M1, E)``: the block's final weights, its mask and the scaled errors.
    """
    d_out, w = W1.shape
    d = jnp.diagonal(U1)
    step = n or 1
    E = jnp.zeros_like(W1)

    def group(g, state):
        W1, M1, E = state
        c0 = g * step
        if n:
            Wg = jax.lax.dynamic_slice_in_dim(W1, c0, n, axis=1)
            dg = jax.lax.dynamic_slice_in_dim(d, c0, n)
            Mg = nm_matrix_mask(-((Wg / dg[None, :]) ** 2), n - k, n)  # True = pruned
            M1 = jax.lax.dynamic_update_slice_in_dim(M1, ~Mg, c0, axis=1)
        for j in range(step):
            c = c0 + j
            col = jax.lax.dynamic_index_in_dim(W1, c, axis=1, keepdims=False)
            keep = jax.lax.dynamic_index_in_dim(M1, c, axis=1, keepdims=False)
            urow = jax.lax.dynamic_index_in_dim(U1, c, axis=0, keepdims=False)
            e = jnp.where(keep, 0.0, col) / urow[c]
            W1 = W1 - e[:, None] * urow[None, :]  # U1 upper: columns < c are untouched
            E = jax.lax.dynamic_update_index_in_dim(E, e, c, axis=1)
        return W1, M1, E

    W1, M1, E = jax.lax.fori_loop(0, w // step, group, (W1, M1, E))
    return jnp.where(M1, W1, 0.0), M1, E


def sparsegpt_matrix(
    W: jax.Array,
    H: jax.Array,
    *,
    k: int | None = None,
    n: int | None = None,
    sparsity: float | jax.Array = 0.5,
    block: int = BLOCK,
    damp: float = 0.01,
) -> SparseGPTResult:
    """SparseGPT on one ``(d_out, d_in)`` matrix view.

    Args:
      W: the dense weights ``(d_out, d_in)``.
      H: ``X^T X`` of the layer's calibration inputs, ``(d_in, d_in)``.
      k, n: the ``K:N`` pattern (``d_in % n == 0``), or ``None`` for unstructured.
      sparsity: the share removed by the unstructured form (ignored for ``K:N``); traced,
        so one compilation serves every sparsity.
      block: the column block width ``B`` (rounded down to a multiple of ``n``).
      damp: the relative damping.

    Returns:
      A :class:`SparseGPTResult`.
    """
    # Cast outside the compiled kernel: float32 and bfloat16 layers share one compilation.
    weights, mask, lam = _sparsegpt(
        jnp.asarray(W).astype(jnp.float32),
        H,
        k=k,
        n=n,
        sparsity=jnp.float32(sparsity),
        block=block,
        damp=damp,
    )
    return SparseGPTResult(weights=weights.astype(W.dtype), mask=mask, damping=lam)


@partial(jax.jit, static_argnames=("k", "n", "block", "damp"))
def _sparsegpt(W, H, *, k, n, sparsity, block, damp):
    d_out, d_in = W.shape
    U, lam, dead = damped_inverse_factor(H, damp)
    Wf = jnp.where(dead[None, :], 0.0, W)
    width = max(block // n, 1) * n if n else block
    out_w, out_m = [], []
    for i1 in range(0, d_in, width):
        i2 = min(i1 + width, d_in)
        W1, U1 = Wf[:, i1:i2], U[i1:i2, i1:i2]
        if n:
            M1 = jnp.ones(W1.shape, bool)
        else:
            count = n_remove(sparsity, d_out * i2) - n_remove(sparsity, d_out * i1)
            M1 = _block_mask(W1, jnp.diagonal(U1), count)
        Q1, M1, E = _sweep(W1, U1, M1, k, n)
        out_w.append(Q1)
        out_m.append(M1)
        if i2 < d_in:
            Wf = Wf.at[:, i2:].add(-E @ U[i1:i2, i2:])
    return jnp.concatenate(out_w, axis=1), jnp.concatenate(out_m, axis=1), lam
