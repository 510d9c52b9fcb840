"""Tests for mpjax.certificates.checks: negative controls showing the checks can fail (a
Lipschitz constant 10x too small is caught), vacuous counts and tightness, probability checks
and the Ledger. The checks passing is tested with the statements (test_statements.py)."""

import jax.numpy as jnp
import numpy as np
import pytest
from mlp_oracle import ce, forward, make_net, random_split, with_layer

from mpjax.certificates.bounds import data_path_bound, mlp_lipschitz
from mpjax.certificates.checks import (
    Ledger,
    check_bound,
    check_frequency,
    check_level,
    check_logit_drift,
    check_margins,
    check_path_bound,
    min_draws,
)
from mpjax.certificates.statements import margin_certificate


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


def test_check_bound_counts_vacuous_and_tightness():
    c = check_bound("s", [1.0, 2.0, 1.0], [0.5, 1.0, 0.9], vacuous=[False, False, True])
    assert c.holds and c.n_checked == 3 and c.n_vacuous == 1
    assert c.max_ratio == pytest.approx(0.5)  # 0.9 / 1.0 is vacuous: left out
    exact = check_bound("s", [-1.0], [-1.5], exact=-2.0)  # (-1.5 + 2) / (-1 + 2)
    assert exact.max_ratio == pytest.approx(0.5)
    assert not check_bound("s", [1.0], [1.1], tol=1e-3).holds
    assert check_bound("s", [], []).n_checked == 0


def test_theta_one_is_never_compared():
    b = data_path_bound(jnp.eye(2), jnp.ones((3, 2)), 1.0)
    c = check_path_bound([0.0, 1.0], [1.0, 0.5], 0.5, b)  # theta = 1 would compare 0.5 with 0.5
    assert c.n_checked == 1
    assert check_path_bound([1.0], [0.5], 0.5, b).n_checked == 0


def test_check_margins_vacuous_when_nothing_is_certified():
    z1 = np.array([[1.0, 0.9], [2.0, 1.95]])
    b = data_path_bound(np.eye(2), np.ones((2, 2)), 1.0)  # eta = 1 >> margins
    cert = margin_certificate(z1, b)
    assert not cert.certified.any()
    c = check_margins(z1, z1 - [[1.0, -1.0], [0.0, 0.0]], cert)
    assert c.holds and c.n_vacuous == 2
    assert c.max_ratio == pytest.approx(1.0)  # sample 0: gap shrinks by 2 = 2 eta


def test_probability_checks_need_enough_draws_and_see_a_wrong_level():
    assert min_draws(0.1) == 324 and min_draws(0.01) == 3564
    with pytest.raises(ValueError, match="at least 324"):
        check_frequency("p", np.zeros(100, bool), 0.1)
    rng = np.random.default_rng(0)
    fails = rng.uniform(size=2000) < 0.1  # rate 0.1: holds at delta = 0.1
    assert check_frequency("p", fails, 0.1).holds
    assert not check_frequency("p", rng.uniform(size=2000) < 0.16, 0.1).holds
    m = rng.normal(size=2000)
    q = float(np.quantile(m, 0.9))
    c = check_level("p", m, q * 1.01, 0.1)
    assert c.holds and c.max_ratio == pytest.approx(1 / 1.01, rel=1e-3)
    assert not check_level("p", m, q * 0.8, 0.1).holds


def test_ledger_raises_on_a_failed_check_or_a_passing_control():
    led = Ledger()
    led.add(check_bound("a", [1.0], [0.5]))
    led.control(check_bound("a [control]", [0.1], [0.5]))
    led.verify()
    rows = {r[0]: r for r in led.rows()}
    assert rows["a"][1:4] == (1, 0, 0.5) and rows["a [control]"][4:] == (1, 1)
    assert "a [control]" in led.table()
    led.control(check_bound("b [control]", [1.0], [0.5]))  # a wrong bound that still holds
    with pytest.raises(AssertionError, match="negative control passed: b"):
        led.verify()
    led2 = Ledger()
    led2.add(check_bound("c", [0.1], [0.5]))
    with pytest.raises(AssertionError, match="violated: c"):
        led2.verify()
