"""Tests for mpjax.certificates.checks: negative controls showing the checks can fail (a
Lipschitz constant 10x too small is caught). The checks passing is tested with the
statements (test_statements.py)."""

import jax.numpy as jnp
import numpy as np
from mlp_oracle import ce, forward, make_net, random_split, with_layer

from mpjax.certificates.bounds import data_path_bound, mlp_lipschitz
from mpjax.certificates.checks import check_logit_drift, check_path_bound


def test_negative_control_exact_last_layer():
    """An L_s 10x too small must be caught: last layer, psi2 = + bias, L = 1 is exact."""
    ws, bs, x, y, f, name = make_net(5)
    rng = np.random.default_rng(0)
    s, r = random_split(ws[2], rng, 0.5)
    z1, inputs = forward(ws, bs, x, f)
    z0 = forward(with_layer(ws, 2, s), bs, x, f)[0]
    good = data_path_bound(r, inputs[2], mlp_lipschitz([], name))
    bad = data_path_bound(r, inputs[2], 0.1 * mlp_lipschitz([], name))
    assert check_logit_drift(z1, z0, good).holds
    check = check_logit_drift(z1, z0, bad)
    assert not check.holds and check.worst_slack < 0


def test_negative_control_ce_path_bound():
    """Tight CE case: 2 classes, confidently wrong, removal pushes the true logit down."""
    psi1 = jnp.ones((8, 3))
    a = jnp.array([[-5.0, 0.0, 1.0], [5.0, 0.0, -1.0]])  # true class 0 scores far below class 1
    r = jnp.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]) * 0.1
    y = jnp.zeros(8, int)
    thetas = jnp.linspace(0, 1, 5)
    ces = [ce(np.asarray(psi1 @ (a - r + t * r).T, np.float64), np.asarray(y)) for t in thetas]
    ce1 = ce(np.asarray(psi1 @ a.T, np.float64), np.asarray(y))
    assert check_path_bound(thetas, ces, ce1, data_path_bound(r, psi1, 1.0)).holds
    bad = check_path_bound(thetas, ces, ce1, data_path_bound(r, psi1, 0.1))
    assert not bad.holds


def test_negative_control_hidden_layers_some_violation():
    found = 0
    for seed in range(6):
        ws, bs, x, y, f, name = make_net(seed)
        s, r = random_split(ws[1], np.random.default_rng(seed), 0.5)
        z1, inputs = forward(ws, bs, x, f)
        z0 = forward(with_layer(ws, 1, s), bs, x, f)[0]
        bad = data_path_bound(r, inputs[1], 0.1 * mlp_lipschitz(ws[2:], name))
        found += not check_logit_drift(z1, z0, bad).holds
    assert found > 0
