"""Tests for mpjax.certificates.bounds: the Lipschitz constants (exact for affine psi2), the
zero bound, the Gaussian form of B_T by Monte Carlo, and bad-input errors."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from mlp_oracle import forward, make_net, with_layer

from mpjax.certificates.bounds import (
    data_path_bound,
    gaussian_drift_bound,
    gaussian_g_from_edge,
    gaussian_path_bound,
    is_zero_bound,
    jacobian_lipschitz_estimate,
    mlp_lipschitz,
)


def test_zero_bound_leaves_logits_identical():
    ws, bs, x, y, f, name = make_net(3)
    x[:, :2] = 0.0  # inputs 0 and 1 never active on T
    a = ws[0]
    r = np.zeros_like(a)
    r[:, :2] = a[:, :2]
    s = a - r
    _, inputs = forward(ws, bs, x, f)
    b = data_path_bound(r, inputs[0], mlp_lipschitz(ws[1:], name))
    assert is_zero_bound(b) and float(b.bound) == 0.0
    z1 = forward(ws, bs, x, f)[0]
    z0 = forward(with_layer(ws, 0, s), bs, x, f)[0]
    np.testing.assert_array_equal(np.asarray(z0), np.asarray(z1))


def test_affine_psi2_lipschitz_is_exact_and_estimate_agrees(rng):
    w = jnp.asarray(rng.normal(size=(5, 7)), jnp.float32)
    lip = mlp_lipschitz([w], "identity")
    u = jnp.asarray(rng.normal(size=(3, 7)), jnp.float32)
    est = jacobian_lipschitz_estimate(lambda v: w @ v + 1.0, u, 0.5 * u)
    np.testing.assert_allclose(est, lip, rtol=1e-6)
    # the l_inf operator norm is attained: x = sign of the heaviest row
    i = int(jnp.argmax(jnp.sum(jnp.abs(w), 1)))
    assert float(jnp.max(jnp.abs(w @ jnp.sign(w[i])))) == pytest.approx(lip, rel=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_gaussian_sufficient_condition_monte_carlo(seed):
    rng = np.random.default_rng(seed)
    n, m, t_size, g, delta = 12, 9, 20, 1.5, 0.2
    psi1 = rng.normal(size=(t_size, m))
    lip = rng.uniform(0.5, 2.0, t_size)
    bound = float(gaussian_path_bound(psi1, lip, g, n, delta))
    # statement 9 written out: (2/|T|) sum_s L_s ||v_s||_2 sqrt((2g/n) log(2 n |T| / delta))
    root = math.sqrt(2 * g / n * math.log(2 * n * t_size / delta))
    assert bound == pytest.approx(2 * np.mean(lip * np.linalg.norm(psi1, axis=1)) * root)
    rs = rng.normal(size=(400, n, m)) * math.sqrt(g / n)
    rv = np.abs(np.einsum("kij,tj->kti", rs, psi1))  # |(R v_s)_i| for every draw k
    draws = 2 * np.mean(lip * rv.max(axis=2), axis=1)  # B_T(R) of every draw
    assert float(data_path_bound(rs[0], psi1, lip).bound) == pytest.approx(draws[0], rel=1e-5)
    assert np.mean(draws <= bound) >= 1 - delta
    # per-coordinate form behind it: max_{s,i} |(R v_s)_i| / ||v_s|| <= sqrt((2g/n) log(2 n |T| / delta))
    thr = math.sqrt(2 * g / n * math.log(2 * n * t_size / delta))
    ratio = rv / np.linalg.norm(psi1, axis=1)[None, :, None]
    assert np.mean(ratio.max(axis=(1, 2)) <= thr) >= 1 - delta
    # MP-edge form: g recovered from the edge sqrt(g)(1 + sqrt(m/n))
    assert gaussian_g_from_edge(math.sqrt(g) * (1 + math.sqrt(m / n)), n, m) == pytest.approx(g)


@pytest.mark.parametrize(
    "call",
    [
        lambda: data_path_bound(jnp.ones((2, 3)), jnp.ones((4, 5)), 1.0),
        lambda: data_path_bound(jnp.ones((2, 3)), jnp.ones((0, 3)), 1.0),
        lambda: data_path_bound(jnp.ones(3), jnp.ones((4, 3)), 1.0),
        lambda: mlp_lipschitz([jnp.ones((2, 2))], "gelu"),
        lambda: gaussian_path_bound(jnp.ones((2, 2)), 1.0, 1.0, 2, delta=1.5),
    ],
)
def test_bad_inputs_raise(call):
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_path_bound_is_float64_arithmetic(dtype):
    """``R psi1 = (1e8 + 1) - 1e8 = 1``: float32 arithmetic would round it to 0 (or 8)."""
    r = np.array([[1.0, -1.0]], dtype)
    psi1 = np.array([[1e8 + 1.0, 1e8]])  # float64 input; 1e8 + 1 is not a float32
    b = data_path_bound(r, psi1, 0.5)
    assert b.residual_inf.dtype == np.float64 and b.residual_inf[0] == 1.0
    assert b.bound == 1.0  # 2 * 0.5 * 1
    assert float(np.float32(1e8 + 1.0) - np.float32(1e8)) != 1.0  # the float32 result differs


def test_gaussian_drift_bound_per_sample():
    v = np.array([[3.0, 4.0], [0.0, 1.0]])  # norms 5 and 1
    got = gaussian_drift_bound(v, np.array([1.0, 2.0]), g=2.0, n=10, delta=0.1)
    scale = math.sqrt(2 * 2.0 / 10 * math.log(2 * 10 / 0.1))
    np.testing.assert_allclose(got, [5 * scale, 2 * scale], rtol=1e-12)
    tokens = gaussian_drift_bound(np.ones((1, 4, 2)), 1.0, 1.0, 10, 0.1)  # 4 tokens: K = 4
    assert tokens[0] == pytest.approx(math.sqrt(2) * math.sqrt(2 / 10 * math.log(80 / 0.1)))
    with pytest.raises(ValueError, match="delta"):
        gaussian_drift_bound(v, 1.0, 1.0, 10, 1.0)
