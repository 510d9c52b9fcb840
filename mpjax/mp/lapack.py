"""Eigenvalues (``?syevd``) and singular values (``?gesdd``) by LAPACK, with the GIL released.

scipy's Python LAPACK wrappers (``scipy.linalg.eigh`` and ``scipy.linalg.lapack``) hold the
GIL while LAPACK runs, so two threads never run two eigensolves at once: a thread pool of
one eigensolve per core gains nothing on them. scipy also publishes every LAPACK routine
for compiled code (:mod:`scipy.linalg.cython_lapack`: one C function per routine, the same
LAPACK library). :func:`eigvalsh` and :func:`svdvals` call those C functions through
:mod:`ctypes`, which releases the GIL for the length of a foreign call, so the eigensolves
and SVDs of :mod:`mpjax.mp.spectra` run on every core at once.

Where a published function cannot be found (a scipy built without it), they fall back to
``scipy.linalg.eigh(..., driver="evd")`` / ``scipy.linalg.svd(..., lapack_driver="gesdd")``:
the same routines, holding the GIL.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

import numpy as np
import scipy.linalg

_INT = ctypes.POINTER(ctypes.c_int)
_PTR = ctypes.c_void_p
#: ``?syevd(jobz, uplo, n, a, lda, w, work, lwork, iwork, liwork, info)``, all by reference.
_SYEVD = ctypes.CFUNCTYPE(
    None, ctypes.c_char_p, ctypes.c_char_p, _INT, _PTR, _INT, _PTR, _PTR, _INT, _PTR, _INT, _INT
)
#: ``?gesdd(jobz, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork, iwork, info)``.
_GESDD = ctypes.CFUNCTYPE(
    None, ctypes.c_char_p, _INT, _INT, _PTR, _INT, _PTR, _PTR, _INT, _PTR, _INT, _PTR, _INT,
    _PTR, _INT,
)
_CAPSULE_NAME = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)
_CAPSULE_POINTER = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)
_ROUTINES = {np.dtype(np.float32): "ssyevd", np.dtype(np.float64): "dsyevd"}
_SVD_ROUTINES = {np.dtype(np.float32): "sgesdd", np.dtype(np.float64): "dgesdd"}


@functools.cache
def _routine(name: str) -> Any:
    """The ctypes function of scipy's compiled LAPACK routine ``name``, or ``None``."""
    try:
        from scipy.linalg import cython_lapack

        capsule = cython_lapack.__pyx_capi__[name]
        get_name = _CAPSULE_NAME(("PyCapsule_GetName", ctypes.pythonapi))
        get_pointer = _CAPSULE_POINTER(("PyCapsule_GetPointer", ctypes.pythonapi))
        address = get_pointer(capsule, get_name(capsule))
    except (ImportError, AttributeError, KeyError, ValueError, TypeError):
        return None
    prototype = _GESDD if name.endswith("gesdd") else _SYEVD
    return prototype(address) if address else None


def released() -> bool:
    """Whether :func:`eigvalsh` and :func:`svdvals` run with the GIL released (scipy
    publishes ``?syevd`` and ``?gesdd``)."""
    names = [*_ROUTINES.values(), *_SVD_ROUTINES.values()]
    return all(_routine(name) is not None for name in names)


@functools.cache
def _workspace(name: str, n: int) -> tuple[int, int]:
    """LAPACK's optimal ``(lwork, liwork)`` for eigenvalues only of an ``n x n`` matrix."""
    dtype = np.float32 if name == "ssyevd" else np.float64
    work, iwork = np.zeros(1, dtype), np.zeros(1, np.intc)
    info, lda = ctypes.c_int(0), ctypes.c_int(max(1, n))
    _routine(name)(b"N", b"L", ctypes.byref(ctypes.c_int(n)), None, ctypes.byref(lda), None,
                   work.ctypes.data, ctypes.byref(ctypes.c_int(-1)), iwork.ctypes.data,
                   ctypes.byref(ctypes.c_int(-1)), ctypes.byref(info))  # fmt: skip
    if info.value:
        raise np.linalg.LinAlgError(f"{name}: workspace query failed (info={info.value}).")
    return max(int(work[0]), 2 * n + 1), max(int(iwork[0]), 1)


def eigvalsh(a: np.ndarray) -> np.ndarray:
    """Ascending eigenvalues of the symmetric matrix ``a`` (float32 or float64), destroying ``a``.

    One triangle of ``a`` is read, so ``a`` must be symmetric (a Gram matrix is): the
    eigenvalues of ``A = Q diag(lambda) Q^T`` come from LAPACK ``?syevd`` without vectors
    (Householder reduction to a tridiagonal ``T = Q^T A Q``, then ``?sterf``), in ``a``'s
    precision.

    Args:
      a: an ``(n, n)`` C- or Fortran-contiguous float32/float64 array; overwritten.

    Returns:
      ``(n,)`` eigenvalues, ascending, in ``a``'s dtype.

    Raises:
      numpy.linalg.LinAlgError: LAPACK did not converge (as ``scipy.linalg.eigh`` raises).

    Examples:
      >>> import numpy as np
      >>> eigvalsh(np.array([[2.0, 1.0], [1.0, 2.0]])).round(12).tolist()
      [1.0, 3.0]
    """
    dtype = np.dtype(a.dtype)
    name = _ROUTINES.get(dtype)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or name is None:
        raise ValueError(f"eigvalsh: expected a square float32/float64 matrix, got "
                         f"{a.shape} {dtype}.")  # fmt: skip
    n = a.shape[0]
    if _routine(name) is None or not (a.flags.c_contiguous or a.flags.f_contiguous):
        return scipy.linalg.eigh(a, eigvals_only=True, overwrite_a=True, check_finite=False,
                                 driver="evd").astype(dtype, copy=False)  # fmt: skip
    if n == 0:
        return np.zeros(0, dtype)
    # a symmetric matrix is its own transpose: C order is the same matrix as Fortran order
    lwork, liwork = _workspace(name, n)
    w, work, iwork = np.empty(n, dtype), np.empty(lwork, dtype), np.empty(liwork, np.intc)
    info = ctypes.c_int(0)
    _routine(name)(b"N", b"L", ctypes.byref(ctypes.c_int(n)), a.ctypes.data,
                   ctypes.byref(ctypes.c_int(n)), w.ctypes.data, work.ctypes.data,
                   ctypes.byref(ctypes.c_int(lwork)), iwork.ctypes.data,
                   ctypes.byref(ctypes.c_int(liwork)), ctypes.byref(info))  # fmt: skip
    if info.value > 0:
        raise np.linalg.LinAlgError(f"{name}: {info.value} off-diagonal elements did not "
                                    "converge to zero.")  # fmt: skip
    if info.value < 0:
        raise ValueError(f"{name}: argument {-info.value} had an illegal value.")
    return w


@functools.cache
def _svd_workspace(name: str, m: int, n: int) -> int:
    """LAPACK's optimal ``lwork`` for singular values only of an ``m x n`` matrix."""
    dtype = np.float32 if name == "sgesdd" else np.float64
    work, info, one = np.zeros(1, dtype), ctypes.c_int(0), ctypes.c_int(1)
    _routine(name)(b"N", ctypes.byref(ctypes.c_int(m)), ctypes.byref(ctypes.c_int(n)), None,
                   ctypes.byref(ctypes.c_int(max(1, m))), None, None, ctypes.byref(one), None,
                   ctypes.byref(one), work.ctypes.data, ctypes.byref(ctypes.c_int(-1)), None,
                   ctypes.byref(info))  # fmt: skip
    if info.value:
        raise np.linalg.LinAlgError(f"{name}: workspace query failed (info={info.value}).")
    return max(int(work[0]), 1)


def svdvals(a: np.ndarray) -> np.ndarray:
    """Descending singular values of ``a`` (float32 or float64) by LAPACK ``?gesdd``,
    destroying ``a``; the GIL is released as for :func:`eigvalsh`.

    Bidiagonalisation ``A = Q B P^T``, then the singular values of ``B`` (no vectors):
    relative accuracy ``~ eps * s_1`` on every value. A C-ordered ``a`` is passed as the
    Fortran matrix ``a^T``, which has the same singular values.

    Examples:
      >>> import numpy as np
      >>> svdvals(np.array([[3.0, 0.0], [0.0, -4.0], [0.0, 0.0]])).round(12).tolist()
      [4.0, 3.0]
    """
    dtype = np.dtype(a.dtype)
    name = _SVD_ROUTINES.get(dtype)
    if a.ndim != 2 or name is None:
        raise ValueError(f"svdvals: expected a float32/float64 matrix, got {a.shape} {dtype}.")
    if _routine(name) is None or not (a.flags.c_contiguous or a.flags.f_contiguous):
        return scipy.linalg.svd(a, compute_uv=False, overwrite_a=True, check_finite=False,
                                lapack_driver="gesdd").astype(dtype, copy=False)  # fmt: skip
    m, n = a.shape if a.flags.f_contiguous else a.shape[::-1]
    k = min(m, n)
    if k == 0:
        return np.zeros(0, dtype)
    lwork = _svd_workspace(name, m, n)
    s, work, iwork = np.empty(k, dtype), np.empty(lwork, dtype), np.empty(8 * k, np.intc)
    info, one = ctypes.c_int(0), ctypes.c_int(1)
    _routine(name)(b"N", ctypes.byref(ctypes.c_int(m)), ctypes.byref(ctypes.c_int(n)),
                   a.ctypes.data, ctypes.byref(ctypes.c_int(m)), s.ctypes.data, None,
                   ctypes.byref(one), None, ctypes.byref(one), work.ctypes.data,
                   ctypes.byref(ctypes.c_int(lwork)), iwork.ctypes.data,
                   ctypes.byref(info))  # fmt: skip
    if info.value > 0:
        raise np.linalg.LinAlgError(f"{name}: the bidiagonal SVD did not converge.")
    if info.value < 0:
        raise ValueError(f"{name}: argument {-info.value} had an illegal value.")
    return s
