"""Tests for mpjax.certificates.bounds: the Lipschitz constants (exact for affine psi2), the
zero bound, the Gaussian form of B_T by Monte Carlo, and bad-input errors."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from mlp_oracle import forward, make_net, with_layer

from mpjax.certificates.bounds import (
    data_path_bound,
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
