"""Negative controls of the certificate statements: cases where an inequality must NOT hold
and the code must say so, and wrong constants that Monte Carlo must expose. Oracles are
written out by hand (float64 numpy), independent of the code under test."""

import math

import numpy as np
import pytest

from mpjax.certificates.bounds import (
    PathBound,
    data_path_bound,
    gaussian_drift_bound,
    gaussian_path_bound,
)
from mpjax.certificates.checks import check_frequency, check_level, min_draws
from mpjax.certificates.statements import (
    stationarity_bound,
    stationarity_eps,
    support_threshold,
)


def bound_of(value: float) -> PathBound:
    return PathBound(value, np.array([value / 2]), np.ones(1), np.ones(1), True)


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 4)])  # wide, tall, square
def test_stationarity_lhs_is_twice_l2_norm_both_ways(shape):
    """``2 l2 ||R||^2 + l1 ||R||_1 <= B_T + eps``: with ``||R||^2 = 1``, ``||R||_1 = 2`` and
    ``l2 = 1, l1 = 0.5`` the left side is exactly 3; it must fail at ``B_T + eps = 2.99`` (a
    halved ``l2`` term, 2, would pass) and hold at 3.01."""
    r = np.zeros(shape)
    r[0, 0], r[-1, -1] = math.sqrt(0.5), -math.sqrt(0.5)  # ||R||_F^2 = 1, ||R||_1 = sqrt(2)
    r1 = float(np.sum(np.abs(r)))
    lhs = 2 * 1.0 * 1.0 + 0.5 * r1
    st = stationarity_bound(r, bound_of(lhs - 0.01), l1=0.5, l2=1.0, eps=0.0)
    assert st.lhs == pytest.approx(lhs, rel=1e-12) and not st.holds
    assert stationarity_bound(r, bound_of(lhs - 0.02), 0.5, 1.0, eps=0.01).holds is False
    assert stationarity_bound(r, bound_of(lhs + 0.01), 0.5, 1.0, eps=0.0).holds


def test_stationarity_fails_at_a_point_that_is_not_stationary():
    """Last layer (``L_s = 1`` exact) with a strong ``l2``: removing ``R`` lowers ``J`` at slope
    ``> 0``, so ``A`` is not 0-stationary and the conclusion must fail with ``eps = 0``; it holds
    with the measured ``eps`` (a halved left side would pass both)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6))
    y = rng.integers(0, 4, 32)
    a = rng.normal(size=(4, 6))
    r = np.where(rng.uniform(size=a.shape) < 0.5, a, 0.0)
    b = data_path_bound(r, x, 1.0)
    l2 = 0.75 * b.bound / np.sum(r**2)  # l2 ||R||^2 = 0.75 B_T < B_T < 2 l2 ||R||^2

    def j(m):  # float64 oracle of J = CE + l2 ||A||^2 at the last layer
        z = x @ m.T
        zm = z.max(1, keepdims=True)
        ce = np.mean(zm[:, 0] + np.log(np.exp(z - zm).sum(1)) - z[np.arange(32), y])
        return ce + l2 * np.sum(m**2)

    h = 1e-6
    slope = (j(a - h * r) - j(a)) / h  # one-sided derivative of J(A_{1-h})
    p = np.exp(x @ a.T - (x @ a.T).max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad = (p - np.eye(4)[y]).T @ x / 32
    eps = stationarity_eps(grad, r, 0.0, l2)
    assert slope == pytest.approx(-eps, rel=1e-4, abs=1e-6)
    assert stationarity_bound(r, b, 0.0, l2, eps).holds
    st = stationarity_bound(r, b, 0.0, l2, 0.0)
    assert st.lhs == pytest.approx(1.5 * b.bound) and not st.holds


@pytest.mark.parametrize("rows", [8, 12, 64])  # R (rows x 12): wide, square, tall
def test_gaussian_bound_constants_are_needed(rows):
    """Statement 9 with one input (``|T| = 1``), where the union bound over the ``n`` rows is
    nearly attained: the bound holds at level ``1 - delta`` and the bound without its
    ``sqrt(2)`` (or times 0.7) fails it, over enough draws to see it."""
    rng = np.random.default_rng(rows)
    g, delta, m = 2.0, 0.1, 12
    v = rng.normal(size=(1, m))
    draws = 4 * min_draws(delta)
    r = rng.normal(size=(draws, rows, m)) * math.sqrt(g / rows)
    bts = 2 * np.abs(np.einsum("bij,tj->bti", r, v)).max(2).mean(1)
    bound = gaussian_path_bound(v, 1.0, g, rows, delta)
    want = 2 * np.linalg.norm(v) * math.sqrt(2 * g / rows * math.log(2 * rows / delta))
    assert bound == pytest.approx(want, rel=1e-12)
    assert bts[0] == pytest.approx(data_path_bound(r[0], v, 1.0).bound, rel=1e-12)
    assert check_level("9", bts, bound, delta).holds
    assert not check_level("9 no sqrt 2", bts, bound / math.sqrt(2), delta).holds
    assert not check_level("9 x 0.7", bts, 0.7 * bound, delta).holds
    drift = gaussian_drift_bound(v, 1.0, g, rows, delta)
    assert drift[0] == pytest.approx(bound / 2, rel=1e-12)


def test_support_threshold_times_08_fails():
    """Statement 10 on a 30 x 20 noise matrix: ``t`` has no false positive w.p. >= 1 - delta;
    ``0.8 t`` has false positives far more often."""
    rng = np.random.default_rng(3)
    g, delta, shape = 1.0, 0.1, (30, 20)
    t = support_threshold(g, shape, delta)
    assert t == pytest.approx(math.sqrt(2 * g * math.log(2 * 600 / delta) / 30))
    top = np.abs(rng.normal(size=(min_draws(delta), *shape)) * math.sqrt(g / 30)).max((1, 2))
    assert check_frequency("10", top > t, delta).holds
    assert not check_frequency("10 x 0.8", top > 0.8 * t, delta).holds
