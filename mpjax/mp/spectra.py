"""Singular values of every weight matrix in a parameter tree.

Conventions: a layer's matrix view ``W`` has shape ``(d_out, d_in)`` (see :mod:`mpjax.tree`);
its singular values ``s`` are returned as a numpy array sorted in **descending** order, of
length ``p = min(d_out, d_in)``.

Two methods:

* ``method="gram"`` (fast): orient ``W`` as ``A`` of shape ``(p, n)`` (transpose if tall),
  form the smaller Gram matrix ``G = A A^T`` (``p x p``) and find its eigenvalues
  ``lambda`` without eigenvectors (tridiagonal reduction, then a root finder), so
  ``s = sqrt(max(lambda, 0))``. Squaring costs accuracy on the small end:
  ``|s_i^2 - s_hat_i^2| <= c * eps * s_1^2``, so singular values far below
  ``sqrt(eps) * s_1`` are only accurate in that absolute sense. Use float64 or the SVD
  path when the small end matters.
* ``method="svd"`` (exact): LAPACK ``gesdd`` without vectors, relative accuracy
  ``~ eps * s_1`` on every value.

Two engines do the work:

* ``engine="host"``: one task per matrix on a thread pool of one worker per CPU core, each
  task running single-threaded BLAS/LAPACK (``G`` by a BLAS product, its eigenvalues by
  LAPACK ``syevd`` without vectors). numpy's product and :func:`mpjax.mp.lapack.eigvalsh`
  release the GIL (scipy's own ``eigh`` wrapper does not), so every core runs a Gram
  product or an eigensolve at once, and nothing is compiled: a new shape costs nothing
  extra. ``method="svd"`` runs LAPACK ``gesdd`` (:func:`mpjax.mp.lapack.svdvals`) the
  same way. Tasks start largest first so the cores finish together. One BLAS
  thread per task also makes the digits of a matrix's values the same whether it is
  computed alone, in a group or in a whole tree.
* ``engine="jax"``: matrices with the same oriented shape ``(p, n)`` and dtype are stacked
  and processed by ``jax.jit(jax.vmap(...))`` functions (Gram product, ``sytrd`` /
  cuSOLVER tridiagonal reduction, bisection by
  :func:`jax.scipy.linalg.eigh_tridiagonal`); jit caches one executable per shape and
  dtype (see :func:`compile_count`). This is the engine for arrays on an accelerator.

``engine="auto"`` (the default) sends numpy arrays and JAX arrays on the CPU to the host
engine, arrays on an accelerator to the JAX engine. Both compute in float32 unless float64
is asked for (or the leaf is float64); half-precision leaves (bf16/fp16) are computed in
float32. The JAX engine runs float64 inside ``jax.enable_x64(True)`` (no global config
change).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from threadpoolctl import ThreadpoolController
from tqdm.auto import tqdm

from mpjax import tree
from mpjax.mp import lapack

PyTree = Any

METHODS = ("gram", "svd")
#: Where the work runs: see the module docstring.
ENGINES = ("auto", "host", "jax")
#: Upper bound on the bytes of one stacked batch of matrices (bounds peak memory).
BATCH_BYTES = 1 << 29


def _gram(a: jax.Array) -> jax.Array:
    """``a a^T`` at full matmul precision (no TF32/bf16 passes on accelerators)."""
    return jnp.matmul(a, a.T, precision=jax.lax.Precision.HIGHEST)


def _gram_eigen(gram: jax.Array) -> jax.Array:
    """Descending ``sqrt(max(lambda, 0))`` of a symmetric PSD matrix, eigenvalues only."""
    _, diag, off, _ = jax.lax.linalg.tridiagonal(gram)
    ev = jax.scipy.linalg.eigh_tridiagonal(diag, off, eigvals_only=True)
    # eigenvalues of a PSD matrix can come out slightly negative from rounding
    return jnp.sqrt(jnp.clip(jnp.sort(ev)[::-1], 0.0, None))


def _gram_one(a: jax.Array) -> jax.Array:
    """Descending singular values of ``a`` (shape ``(p, n)``, ``p <= n``) via its Gram matrix."""
    return _gram_eigen(_gram(a))


def _svd_one(a: jax.Array) -> jax.Array:
    """Descending singular values of ``a`` from the SVD (LAPACK ``gesdd`` on CPU)."""
    return jnp.linalg.svd(a, compute_uv=False)


# Jitted, vmapped pieces; jit caches one executable per (batch, shape, dtype). The Gram path
# is two executables so the costly-to-compile eigen part is shared by every n with the same p.
# A tall stack (batch, n, p) is contracted as a^T a, so no transpose is ever materialised.
_GRAM = jax.jit(jax.vmap(_gram))
_GRAM_TALL = jax.jit(jax.vmap(lambda a: _gram(a.T)))
_GRAM_EIGEN = jax.jit(jax.vmap(_gram_eigen))
_BATCHED = {
    "gram": lambda stack: _GRAM_EIGEN(_GRAM(stack)),
    "svd": jax.jit(jax.vmap(_svd_one)),
}


def batched_function(method: str = "gram") -> Any:
    """The ``(batch, p, n) -> (batch, p)`` function behind ``method``.

    Exposed so callers (and tests) can inspect the compile caches: :func:`compile_count`.
    """
    _check_method(method)
    return _BATCHED[method]


def compile_count(method: str = "gram") -> int:
    """Number of executables compiled so far for ``method`` (all shapes and dtypes)."""
    _check_method(method)
    if method == "gram":
        return _GRAM._cache_size() + _GRAM_TALL._cache_size() + _GRAM_EIGEN._cache_size()
    return _BATCHED["svd"]._cache_size()


def _check_method(method: str, engine: str = "auto") -> None:
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {METHODS}.")
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: expected one of {ENGINES}.")


def _on_host(w: Any, engine: str) -> bool:
    """Whether ``w`` goes to the host engine: numpy data, or a JAX array on the CPU."""
    if engine != "auto":
        return engine == "host"
    if isinstance(w, jax.Array):
        return all(d.platform == "cpu" for d in w.devices())
    return True


def _host_one(w: Any, method: str, dtype: np.dtype) -> np.ndarray:
    """Descending singular values of one matrix on the host (single-threaded BLAS/LAPACK)."""
    if method == "svd":  # gesdd destroys its input: one private (cast) copy, either order
        return lapack.svdvals(np.array(w, dtype, order="K", copy=True))
    a = np.asarray(w, dtype=dtype)
    a = a.T if a.shape[0] > a.shape[1] else a  # (p, n), a view
    with np.errstate(over="ignore", invalid="ignore"):
        gram = a @ a.T  # BLAS syrk-like product of a with its own transpose
    if not np.all(np.isfinite(gram)):  # overflow or NaN: LAPACK would not converge
        return np.full(a.shape[0], np.nan, dtype)
    ev = lapack.eigvalsh(gram)  # LAPACK syevd with the GIL released: cores run in parallel
    # eigenvalues of a PSD matrix can come out slightly negative from rounding
    return np.sqrt(np.maximum(ev[::-1], 0.0)).astype(dtype, copy=False)


_BLAS = None  # a ThreadpoolController, made on first use (it scans the loaded libraries)


def cores() -> int:
    """CPU cores this process may run on (the host engine runs one matrix per core)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _host_all(
    mats: Mapping[str, Any], method: str, dtypes: Mapping[str, np.dtype], bar: Any = None
) -> dict[str, np.ndarray]:
    """``{path: s}`` of every matrix, one task per matrix, largest first.

    One worker per core (at most one per matrix), each on one BLAS thread: the cores are
    busy without oversubscription (BLAS threads that spin while another pool waits for a
    core are what slows threaded BLAS on a loaded machine), and a matrix gets the same
    digits whether it is computed alone or with others (the rounding of a threaded BLAS
    call depends on its thread count).
    """
    global _BLAS
    if not mats:
        return {}
    cost = {p: np.prod(np.shape(w), dtype=float) * min(np.shape(w)) for p, w in mats.items()}
    order = sorted(mats, key=cost.__getitem__, reverse=True)
    _BLAS = _BLAS or ThreadpoolController()
    out: dict[str, np.ndarray] = {}
    with _BLAS.limit(limits=1, user_api="blas"):
        if len(order) == 1:  # no pool for one matrix
            return {order[0]: _host_one(mats[order[0]], method, dtypes[order[0]])}
        with ThreadPoolExecutor(min(cores(), len(order)), "mpjax-spectra") as pool:
            jobs = {pool.submit(_host_one, mats[p], method, dtypes[p]): p for p in order}
            for job in as_completed(jobs):
                out[jobs[job]] = job.result()
                if bar is not None:
                    bar.update(1)
    return out


def _compute_dtype(leaf_dtype: Any, dtype: Any) -> np.dtype:
    if dtype is not None:
        out = np.dtype(dtype)
        if out not in (np.float32, np.float64):
            raise ValueError(f"dtype={dtype!r}: expected float32 or float64 (or None).")
        return out
    leaf_dtype = np.dtype(leaf_dtype)
    return np.dtype(np.float64) if leaf_dtype == np.float64 else np.dtype(np.float32)


def _oriented(w: Any) -> tuple[Any, bool]:
    """``(a, tall)`` with ``a`` either ``w`` or ``w.T`` (same singular values).

    ``tall=False``: ``a`` is ``(p, n)``; ``tall=True``: ``a`` is ``(n, p)`` with ``p < n``.
    A numpy view is taken in its memory order, so stacking it is a plain copy rather than a
    strided transpose (Dense kernels ``(in, out)`` have transposed matrix views).
    """
    a = w.T if w.shape[0] > w.shape[1] else w
    if isinstance(a, np.ndarray) and not a.flags.c_contiguous and a.T.flags.c_contiguous:
        return a.T, a.shape[0] != a.shape[1]
    return a, False


def _stack(stack: list[Any], dtype: np.dtype) -> jax.Array:
    """One ``(batch, p, n)`` device array; numpy leaves are stacked on the host (one copy)."""
    if all(isinstance(a, np.ndarray) for a in stack):
        return jnp.asarray(np.stack(stack).astype(dtype, copy=False))
    return jnp.stack([jnp.asarray(a).astype(dtype) for a in stack])


def _run_batch(stack: list[Any], method: str, dtype: np.dtype, tall: bool = False) -> np.ndarray:
    fn = _BATCHED[method]  # the SVD does not care about orientation
    if method == "gram" and tall:
        fn = lambda x: _GRAM_EIGEN(_GRAM_TALL(x))  # noqa: E731
    if dtype == np.float64:
        with jax.enable_x64(True):
            return np.asarray(fn(_stack(stack, dtype)))
    return np.asarray(fn(_stack(stack, dtype)))


def matrix_singular_values(
    w: Any, method: str = "gram", dtype: Any = None, engine: str = "auto"
) -> np.ndarray:
    """Descending singular values of one ``(d_out, d_in)`` matrix.

    Args:
      w: a 2-D numpy or jax array.
      method: ``"gram"`` (Gram matrix eigenvalues) or ``"svd"``.
      dtype: ``None`` (float32, or float64 for float64 input), ``np.float32`` or
        ``np.float64``.
      engine: ``"auto"``, ``"host"`` or ``"jax"`` (see the module docstring).

    Returns:
      numpy array of length ``min(d_out, d_in)``, descending, in the compute dtype.

    Examples:
      >>> import numpy as np
      >>> w = np.diag([3.0, 1.0, 2.0]).astype(np.float32)
      >>> np.round(matrix_singular_values(w), 4).tolist()
      [3.0, 2.0, 1.0]
    """
    _check_method(method, engine)
    if np.ndim(w) != 2:
        raise ValueError(f"w: expected a 2-D (d_out, d_in) matrix, got shape {np.shape(w)}.")
    cdt = _compute_dtype(w.dtype, dtype)
    if min(np.shape(w)) == 0:
        return np.zeros((0,), dtype=cdt)
    if _on_host(w, engine):
        return _host_all({"w": w}, method, {"w": cdt})["w"]
    a, tall = _oriented(w)
    return _run_batch([a], method, cdt, tall)[0]


def _groups(oriented: Mapping[str, tuple[Any, bool]], dtype: Any) -> dict[tuple, list[str]]:
    """Paths grouped by ``(p, n, compute dtype, tall)`` of their oriented view."""
    groups: dict[tuple, list[str]] = {}
    for path, (a, tall) in oriented.items():
        p, n = sorted(a.shape)
        groups.setdefault((p, n, _compute_dtype(a.dtype, dtype), tall), []).append(path)
    return groups


def _jax_all(mats: Mapping[str, Any], method: str, dtype: Any, bar: Any) -> dict[str, np.ndarray]:
    """``{path: s}`` by the JAX engine: same-shape matrices stacked, batches bounded in bytes."""
    oriented = {path: _oriented(w) for path, w in mats.items()}
    out: dict[str, np.ndarray] = {}
    for (p, n, cdt, tall), paths in _groups(oriented, dtype).items():
        chunk = max(1, BATCH_BYTES // (p * n * cdt.itemsize))
        for start in range(0, len(paths), chunk):
            part = paths[start : start + chunk]
            values = _run_batch([oriented[q][0] for q in part], method, cdt, tall)
            out.update(zip(part, values, strict=True))
            bar.update(len(part))
    return out


def singular_values(
    params: PyTree,
    views: Mapping[str, tree.LayerView] | None = None,
    method: str = "gram",
    dtype: Any = None,
    progress: bool = False,
    engine: str = "auto",
) -> dict[str, np.ndarray]:
    """Descending singular values of every selected weight matrix of ``params``.

    Args:
      params: a parameter pytree (Linen dict, ``nnx.State`` or torch-layout flat dict).
      views: ``{path: LayerView}`` from :func:`mpjax.tree.select`; default all matrices.
      method: ``"gram"`` (fast, default) or ``"svd"`` (exact); see the module docstring.
      dtype: ``None``, ``np.float32`` or ``np.float64``.
      progress: show a tqdm bar over layers (only when stderr is a terminal).
      engine: ``"auto"`` (default), ``"host"`` or ``"jax"``; see the module docstring.

    Returns:
      ``{path: s}`` in the order of ``views``; ``s`` has length ``min(d_out, d_in)``.

    Raises:
      ValueError: for an unknown ``method``/``dtype``/``engine`` or a path missing from
        ``params``.
    """
    _check_method(method, engine)
    mats = tree.matrices(params, views)
    dtypes = {path: _compute_dtype(w.dtype, dtype) for path, w in mats.items()}
    out = {path: np.zeros((0,), dtypes[path]) for path, w in mats.items() if min(w.shape) == 0}
    host = {p: w for p, w in mats.items() if p not in out and _on_host(w, engine)}
    rest = {p: w for p, w in mats.items() if p not in out and p not in host}
    bar = tqdm(total=len(mats), desc="spectra", unit="layer", disable=None if progress else True)
    bar.update(len(out))
    out.update(_host_all(host, method, dtypes, bar))
    out.update(_jax_all(rest, method, dtype, bar))
    bar.close()
    return {path: out[path] for path in mats}


def thin_svd(w: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD ``W = U diag(s) Vt`` of one matrix on the host, in float64, through its Gram matrix.

    The eigendecomposition of the smaller Gram matrix ``G = A A^T`` (``A`` is ``W`` or
    ``W^T``, whichever has fewer rows) gives ``s = sqrt(max(lambda, 0))`` and that side's
    singular vectors; the other side's are ``A^T u_i / s_i`` (zero where ``s_i = 0``). It is
    2-3x cheaper than a LAPACK SVD and, in float64, accurate to about ``1e-8 s_1`` on every
    value (the squaring costs relative accuracy only for ``s_i`` below ``~1e-8 s_1``).

    Args:
      w: a ``(d_out, d_in)`` array.

    Returns:
      ``(s, U, Vt)``: ``s`` descending, shape ``(p,)``; ``U`` ``(d_out, p)``; ``Vt``
      ``(p, d_in)``, with ``p = min(d_out, d_in)``.

    Examples:
      >>> s, u, vt = thin_svd(np.diag([1.0, 3.0]))
      >>> s.tolist(), np.abs(u @ np.diag(s) @ vt).round(12).tolist()
      ([3.0, 1.0], [[1.0, 0.0], [0.0, 3.0]])
    """
    w64 = np.asarray(w, np.float64)
    if w64.ndim != 2:
        raise ValueError(f"w: expected a 2-D matrix view, got shape {w64.shape}.")
    wide = w64.shape[0] <= w64.shape[1]
    a = w64 if wide else w64.T
    eig, q = np.linalg.eigh(a @ a.T)
    order = np.argsort(eig)[::-1]
    s = np.sqrt(np.maximum(eig[order], 0.0))
    q = q[:, order]
    tol = s[0] * max(a.shape) * np.finfo(np.float64).eps if s.size else 0.0
    safe = np.where(s > tol, s, 1.0)
    other = np.where(s > tol, (a.T @ q) / safe, 0.0)  # (n, p): the longer side's vectors
    return (s, q, other.T) if wide else (s, other, q.T)
