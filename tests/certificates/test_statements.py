"""Tests for mpjax.certificates.statements: every statement checked on many random small
networks (float64 numpy oracle), edge cases (theta = 0/1, R = 0, S = 0, ties), hypotheses
that fail, and bad-input errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mlp_oracle import THETAS, acc, ce, en, forward, make_net, random_split, with_layer

from mpjax.certificates.bounds import PathBound, data_path_bound, is_zero_bound, mlp_lipschitz
from mpjax.certificates.checks import (
    check_logit_drift,
    check_margins,
    check_objective_bound,
    check_path_bound,
)
from mpjax.certificates.objectives import cross_entropy, predicted_margin
from mpjax.certificates.statements import (
    elastic_net_certificate,
    frobenius_certificate,
    margin_certificate,
    prune_restore,
    stationarity_bound,
    stationarity_eps,
    support_threshold,
    telescope,
    threshold_support,
)

CASES = [(seed, k, act) for seed in range(8) for k in range(3) for act in ("relu", "abs")]


@pytest.mark.parametrize("seed,k,act", CASES)
def test_statements_1_2_4_5_on_random_networks(seed, k, act):
    ws, bs, x, y, f, name = make_net(seed, act)
    rng = np.random.default_rng(100 + seed)
    frac = [0.0, 0.3, 0.7, 1.0][seed % 4]  # R = 0 and S = 0 included
    s, r = random_split(ws[k], rng, frac)
    z1, inputs = forward(ws, bs, x, f)
    lip = mlp_lipschitz(ws[k + 1 :], name)
    # docs/method/certificates.md: product of the downstream max-abs-row-sums (1 for the last layer)
    assert lip == pytest.approx(np.prod([np.abs(w).sum(1).max() for w in ws[k + 1 :]]))
    b = data_path_bound(r, inputs[k], lip)
    zs = [forward(with_layer(ws, k, s + t * r), bs, x, f)[0] for t in THETAS]
    # statement 1 and the per-sample logit drift behind it
    assert check_path_bound(THETAS, [ce(z, y) for z in zs], ce(z1, y), b).holds
    for t, z in zip(THETAS, zs, strict=True):
        assert check_logit_drift(z1, z, b, float(t)).holds
        cert = margin_certificate(z1, b, float(t), y)
        assert check_margins(z1, z, cert).holds  # statement 2
        acc_change = abs(acc(z, y) - acc(z1, y))
        assert acc_change <= float(cert.accuracy_change_bound) + 1e-9
    if frac == 0.0:
        assert float(b.bound) == 0.0 and is_zero_bound(b)
        assert margin_certificate(z1, b).share == jnp.mean(predicted_margin(z1) > 0)
    # statement 4 with several strengths, 5 with a non-disjoint split
    for l1, l2 in [(0.0, 0.0), (1e-2, 1e-2), (0.3, 3.0)]:
        cert_en = elastic_net_certificate(s, r, b, l1, l2)
        assert cert_en.disjoint and cert_en.hypotheses_hold
        j = np.array([en(z, y, s + t * r, l1, l2) for t, z in zip(THETAS, zs, strict=True)])
        assert check_objective_bound(THETAS, j, float(j[-1]), cert_en).holds
        if cert_en.certified:
            assert j[0] < j[-1]  # removal certified -> J decreased
    r2 = rng.normal(size=ws[k].shape) * 0.1
    fro = frobenius_certificate(ws[k] - r2, r2, data_path_bound(r2, inputs[k], lip), 0.5)
    assert not fro.disjoint and fro.hypotheses_hold
    j2 = np.array(
        [
            en(
                forward(with_layer(ws, k, ws[k] - r2 + t * r2), bs, x, f)[0],
                y,
                ws[k] - r2 + t * r2,
                0,
                0.5,
            )
            for t in THETAS
        ]
    )
    assert check_objective_bound(THETAS, j2, float(j2[-1]), fro).holds


@pytest.mark.parametrize("seed", range(6))
def test_prune_restore_and_stationarity(seed):
    ws, bs, x, y, f, name = make_net(seed)
    k, l1, l2 = seed % 3, 0.05, 0.5
    a = ws[k]
    order = np.argsort(np.abs(np.asarray(a)).ravel())
    tier = np.empty(a.size, int)
    tier[order] = np.arange(a.size) * 3 // a.size  # 0 = P (smallest), 1 = Q, 2 = S
    tier = tier.reshape(a.shape)
    p, q, s = (np.where(tier == i, a, 0.0) for i in range(3))
    _, inputs = forward(ws, bs, x, f)
    lip = mlp_lipschitz(ws[k + 1 :], name)
    pr = prune_restore(s, q, p, inputs[k], lip, l1, l2)
    assert pr.hypotheses_hold

    def j_of(m):
        return en(forward(with_layer(ws, k, m), bs, x, f)[0], y, m, l1, l2)

    assert j_of(s + q) - j_of(a) <= float(pr.bound_restore) + 1e-5
    assert j_of(s) - j_of(a) <= float(pr.bound_prune_all) + 1e-5
    assert pr.restore_helps == bool(pr.bound_restore < pr.bound_prune_all)
    # statement 7: eps from the exact one-sided slope (autodiff), then the inequality
    r = q + p

    def ce_of(m):  # jax version of the oracle, for the exact gradient
        h = jnp.asarray(x, jnp.float32)
        for i, (w, b) in enumerate(zip(with_layer(ws, k, m), bs, strict=True)):
            h = h @ jnp.asarray(w, jnp.float32).T + b
            h = jax.nn.relu(h) if i < 2 else h
        return cross_entropy(h, jnp.asarray(y))

    grad = jax.grad(ce_of)(jnp.asarray(a, jnp.float32))
    eps = stationarity_eps(grad, r, l1, l2)
    h = 1e-3
    slope = (j_of(a - h * r) - j_of(a)) / h
    assert slope >= -float(eps) - 0.05 * (1 + abs(float(eps)))  # finite difference ~ -eps
    st = stationarity_bound(r, data_path_bound(r, inputs[k], lip), l1, l2, eps)
    assert st.holds and st.hypotheses_hold


@pytest.mark.parametrize("seed", range(6))
def test_telescoping_two_layers(seed):
    ws, bs, x, y, f, name = make_net(seed, "abs" if seed % 2 else "relu")
    rng = np.random.default_rng(seed)
    splits = [random_split(ws[k], rng, 0.5) for k in range(3)]
    z0, _ = forward(ws, bs, x, f)
    current, steps = list(ws), []
    for k in (0, 1, 2):
        _, inputs = forward(current, bs, x, f)  # bound of step k in network N_{k-1}
        steps.append(
            data_path_bound(splits[k][1], inputs[k], mlp_lipschitz(current[k + 1 :], name))
        )
        current[k] = splits[k][0]
    tele = telescope(steps)
    zk, _ = forward(current, bs, x, f)
    assert abs(ce(zk, y) - ce(z0, y)) <= float(tele.total) + 1e-5
    drift = np.max(np.abs(zk - z0), axis=1)
    assert np.all(drift <= np.asarray(tele.eta) * (1 + 1e-5) + 1e-6)
    assert tele.provable


def test_margin_ties_never_certified():
    z = jnp.array([[2.0, 2.0, 0.0], [3.0, 1.0, 0.0]])
    b = PathBound(jnp.zeros(()), jnp.zeros(2), jnp.ones(2), jnp.zeros(2), True)
    cert = margin_certificate(z, b, 0.0, jnp.array([0, 0]))
    assert list(np.asarray(cert.certified)) == [False, True]
    assert float(cert.accuracy_change_bound) == pytest.approx(0.5)  # the tie is at risk
    assert float(margin_certificate(z, b, 1.0).share) == pytest.approx(0.5)


def test_estimated_bound_never_certifies(rng):
    s = jnp.zeros((3, 4))
    r = jnp.ones((3, 4)) * 0.01
    b = data_path_bound(r, jnp.ones((5, 4)), 1.0, provable=False)
    cert = elastic_net_certificate(s, r, b, l1=10.0, l2=10.0)
    assert float(cert.slack) > 0 and not cert.certified and not cert.hypotheses_hold
    assert not margin_certificate(jnp.eye(5, 3), b).hypotheses_hold


def test_non_disjoint_split_is_not_a_mask_certificate():
    a = jnp.ones((2, 2))
    b = data_path_bound(0.5 * a, jnp.ones((3, 2)), 1.0)
    cert = elastic_net_certificate(0.5 * a, 0.5 * a, b, l1=100.0, l2=100.0)
    assert not cert.disjoint and not cert.certified


@pytest.mark.parametrize("seed", range(3))
def test_threshold_support_recovery(seed):
    rng = np.random.default_rng(seed)
    n, m, g, delta = 40, 30, 1.0, 0.1
    t = support_threshold(g, (n, m), delta)
    assert t == pytest.approx(math.sqrt(2 * g * math.log(2 * n * m / delta) / n))
    support = rng.uniform(size=(n, m)) < 0.1
    s = np.where(support, rng.choice([-1, 1], (n, m)) * rng.uniform(2.01 * t, 4 * t, (n, m)), 0)
    ok = []
    for _ in range(200):
        w = s + rng.normal(size=(n, m)) * math.sqrt(g / n)
        kept, t2 = threshold_support(w, g, delta)
        assert t2 == t
        ok.append(not np.any(kept & ~support) and np.all(kept[np.abs(s) > 2 * t]))
    assert np.mean(ok) >= 1 - delta


@pytest.mark.parametrize(
    "call",
    [
        lambda: support_threshold(1.0, (3, 3), delta=0.0),
        lambda: elastic_net_certificate(jnp.ones((2, 2)), jnp.ones((2, 3)), None, 0.0, 0.0),
        lambda: telescope([]),
    ],
)
def test_bad_inputs_raise(call):
    with pytest.raises(ValueError):
        call()
