import re
import threading
import time

import numpy as np
import pytest
import scipy.linalg

from mpjax.mp import lapack


def _gram(rng, p, n, dtype):
    a = rng.standard_normal((p, n)).astype(dtype)
    return a @ a.T


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p,n", [(1, 1), (2, 5), (37, 37), (64, 200), (300, 120)])
def test_eigenvalues_equal_scipy_eigh(rng, dtype, p, n):
    g = _gram(rng, p, n, dtype)
    want = scipy.linalg.eigh(g, eigvals_only=True, driver="evd")
    got = lapack.eigvalsh(g.copy())
    assert got.dtype == dtype and got.shape == (p,)
    assert np.all(np.diff(got) >= 0)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * want[-1])
    ref = np.linalg.eigvalsh(g.astype(np.float64))  # independent of the routine
    np.testing.assert_allclose(got, ref, rtol=0, atol=10 * tol * ref[-1])


def test_fortran_order_and_known_values():
    d = np.diag([3.0, -1.0, 2.0])
    q, _ = np.linalg.qr(np.arange(9.0).reshape(3, 3) + np.eye(3))
    a = np.asfortranarray(q @ d @ q.T)
    np.testing.assert_allclose(lapack.eigvalsh(a), [-1.0, 2.0, 3.0], atol=1e-12)
    assert lapack.eigvalsh(np.zeros((0, 0))).shape == (0,)


def test_fallback_gives_the_same_values(rng, monkeypatch):
    g = _gram(rng, 50, 80, np.float32)
    fast = lapack.eigvalsh(g.copy())
    monkeypatch.setattr(lapack, "_routine", lambda name: None)
    np.testing.assert_allclose(lapack.eigvalsh(g.copy()), fast, rtol=0, atol=1e-5 * fast[-1])


def test_a_strided_matrix_takes_the_scipy_path_with_the_same_values(rng):
    g = _gram(rng, 40, 60, np.float64)[::2, ::2]  # symmetric, neither C nor F contiguous
    assert not (g.flags.c_contiguous or g.flags.f_contiguous)
    want = np.linalg.eigvalsh(g)
    np.testing.assert_allclose(lapack.eigvalsh(g), want, rtol=0, atol=1e-12 * want[-1])


@pytest.mark.parametrize("bad", [np.ones((3, 4)), np.ones(3), np.ones((2, 2), np.int64)])
def test_refuses_what_is_not_a_square_float_matrix(bad):
    with pytest.raises(ValueError, match="square float32/float64"):
        lapack.eigvalsh(bad)


def _python_steps_during(solve_one, g):
    """Main-thread loop steps timed inside the middle half of ``solve_one(g)`` in a worker.

    With the GIL held through the solve, the main thread cannot run there: 0 steps.
    """
    span = []

    def solve():
        t0 = time.perf_counter()
        solve_one(g)
        span.extend([t0, time.perf_counter()])

    worker, stamps = threading.Thread(target=solve), []
    worker.start()
    while worker.is_alive():
        stamps.append(time.perf_counter())
    worker.join()
    t0, t1 = span
    return sum(t0 + 0.25 * (t1 - t0) < s < t0 + 0.75 * (t1 - t0) for s in stamps)


def test_the_gil_is_released_during_the_eigensolve(rng):
    assert lapack.released()
    g = _gram(rng, 1600, 1600, np.float64)
    lapack.eigvalsh(g[:8, :8].copy())  # first call's set-up (workspace query) done before
    assert _python_steps_during(lapack.eigvalsh, g.copy()) > 100


def test_the_gil_harness_can_fail():
    """A C call that holds the GIL throughout (the regex engine backtracking) gives 0."""
    assert _python_steps_during(lambda _: re.fullmatch(r"(a+)+b", "a" * 21), None) == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (40, 40), (90, 25)])
@pytest.mark.parametrize("order", ["C", "F"])
def test_singular_values_equal_scipy_svd(rng, dtype, shape, order):
    a = np.asarray(rng.standard_normal(shape), dtype=dtype, order=order)
    want = scipy.linalg.svd(a, compute_uv=False)
    got = lapack.svdvals(a.copy(order="K"))
    assert got.dtype == dtype and got.shape == (min(shape),)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * want[0])
    assert np.all(np.diff(got) <= 0)


def test_svd_fallback_and_refusals(rng, monkeypatch):
    a = rng.standard_normal((12, 30)).astype(np.float32)
    fast = lapack.svdvals(a.copy())
    with pytest.raises(ValueError, match="float32/float64 matrix"):
        lapack.svdvals(np.ones(3))
    assert lapack.svdvals(np.zeros((0, 4))).shape == (0,)
    monkeypatch.setattr(lapack, "_routine", lambda name: None)
    np.testing.assert_allclose(lapack.svdvals(a.copy()), fast, rtol=0, atol=1e-5 * fast[0])


def test_the_gil_is_released_during_the_svd(rng):
    a = rng.standard_normal((1600, 1600))
    assert _python_steps_during(lapack.svdvals, a) > 100
