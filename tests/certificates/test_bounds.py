"""Tests for mpjax.certificates.bounds and mpjax.certificates.network: every statement checked on many random
small networks, edge cases (theta = 0/1, R = 0, ties), a negative control showing the checks
can fail, and bad-input errors (including the ``mpjax certify`` command)."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import tree as mtree
from mpjax.certificates import bounds as C
from mpjax.certificates import network as certify
from mpjax.certificates import objectives as O

ACTS = {"relu": lambda v: np.maximum(v, 0.0), "abs": np.abs}
THETAS = np.linspace(0.0, 1.0, 6)  # includes theta = 0 and theta = 1
WIDTHS = (9, 8, 7, 4)  # fixed shapes: jax compiles each op once for all seeds


def make_net(seed, act="relu", widths=WIDTHS):
    """Random MLP (float64 numpy oracle): matrices ``(d_out, d_in)``, biases, data, labels."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.5, 2.0)
    ws = [
        rng.normal(size=(b, a)) * scale / math.sqrt(a)
        for a, b in zip(widths, widths[1:], strict=False)
    ]
    bs = [rng.normal(size=b) * 0.3 for b in widths[1:]]
    x = rng.normal(size=(24, widths[0]))
    y = rng.integers(0, widths[-1], 24)
    return ws, bs, x, y, ACTS[act], act


def forward(ws, bs, x, act):
    """Logits and every layer's input (the oracle; float64 numpy, independent of Flax)."""
    inputs, h = [], x
    for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
        inputs.append(h)
        h = h @ w.T + b
        if i < len(ws) - 1:
            h = act(h)
    return h, inputs


def ce(z, y):
    """Mean cross-entropy oracle (float64)."""
    m = z.max(1, keepdims=True)
    return float(np.mean(m[:, 0] + np.log(np.exp(z - m).sum(1)) - z[np.arange(len(y)), y]))


def en(z, y, a, l1, l2):
    return ce(z, y) + l2 * float(np.sum(a**2)) + l1 * float(np.sum(np.abs(a)))


def acc(z, y):
    return float(np.mean(np.argmax(z, 1) == y))


def random_split(w, rng, frac):
    keep = rng.uniform(size=w.shape) >= frac
    return np.where(keep, w, 0.0), np.where(keep, 0.0, w)


def with_layer(ws, k, a):
    return ws[:k] + [a] + ws[k + 1 :]


CASES = [(seed, k, act) for seed in range(8) for k in range(3) for act in ("relu", "abs")]


@pytest.mark.parametrize("seed,k,act", CASES)
def test_statements_1_2_4_5_on_random_networks(seed, k, act):
    ws, bs, x, y, f, name = make_net(seed, act)
    rng = np.random.default_rng(100 + seed)
    frac = [0.0, 0.3, 0.7, 1.0][seed % 4]  # R = 0 and S = 0 included
    s, r = random_split(ws[k], rng, frac)
    z1, inputs = forward(ws, bs, x, f)
    lip = C.mlp_lipschitz(ws[k + 1 :], name)
    # SPEC: product of the downstream max-abs-row-sums (1 for the last layer)
    assert lip == pytest.approx(np.prod([np.abs(w).sum(1).max() for w in ws[k + 1 :]]))
    b = C.data_path_budget(r, inputs[k], lip)
    zs = [forward(with_layer(ws, k, s + t * r), bs, x, f)[0] for t in THETAS]
    # statement 1 and the per-sample logit drift behind it
    assert C.check_path_bound(THETAS, [ce(z, y) for z in zs], ce(z1, y), b).holds
    for t, z in zip(THETAS, zs, strict=True):
        assert C.check_logit_drift(z1, z, b, float(t)).holds
        cert = C.margin_certificate(z1, b, float(t), y)
        assert C.check_margins(z1, z, cert).holds  # statement 2
        acc_change = abs(acc(z, y) - acc(z1, y))
        assert acc_change <= float(cert.accuracy_change_bound) + 1e-9
    if frac == 0.0:
        assert float(b.budget) == 0.0 and C.is_zero_budget(b)
        assert C.margin_certificate(z1, b).share == jnp.mean(O.predicted_margin(z1) > 0)
    # statement 4 with several strengths, 5 with a non-disjoint split
    for l1, l2 in [(0.0, 0.0), (1e-2, 1e-2), (0.3, 3.0)]:
        cert_en = C.elastic_net_certificate(s, r, b, l1, l2)
        assert cert_en.disjoint and cert_en.hypotheses_hold
        j = np.array([en(z, y, s + t * r, l1, l2) for t, z in zip(THETAS, zs, strict=True)])
        assert C.check_objective_bound(THETAS, j, float(j[-1]), cert_en).holds
        if cert_en.certified:
            assert j[0] < j[-1]  # removal certified -> J decreased
    r2 = rng.normal(size=ws[k].shape) * 0.1
    fro = C.frobenius_certificate(ws[k] - r2, r2, C.data_path_budget(r2, inputs[k], lip), 0.5)
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
    assert C.check_objective_bound(THETAS, j2, float(j2[-1]), fro).holds


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
    lip = C.mlp_lipschitz(ws[k + 1 :], name)
    pr = C.prune_restore(s, q, p, inputs[k], lip, l1, l2)
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
        return O.cross_entropy(h, jnp.asarray(y))

    grad = jax.grad(ce_of)(jnp.asarray(a, jnp.float32))
    eps = C.stationarity_eps(grad, r, l1, l2)
    h = 1e-3
    slope = (j_of(a - h * r) - j_of(a)) / h
    assert slope >= -float(eps) - 0.05 * (1 + abs(float(eps)))  # finite difference ~ -eps
    st = C.stationarity_bound(r, C.data_path_budget(r, inputs[k], lip), l1, l2, eps)
    assert st.holds and st.hypotheses_hold


@pytest.mark.parametrize("seed", range(6))
def test_telescoping_two_layers(seed):
    ws, bs, x, y, f, name = make_net(seed, "abs" if seed % 2 else "relu")
    rng = np.random.default_rng(seed)
    splits = [random_split(ws[k], rng, 0.5) for k in range(3)]
    z0, _ = forward(ws, bs, x, f)
    current, steps = list(ws), []
    for k in (0, 1, 2):
        _, inputs = forward(current, bs, x, f)  # budget of step k in network N_{k-1}
        steps.append(
            C.data_path_budget(splits[k][1], inputs[k], C.mlp_lipschitz(current[k + 1 :], name))
        )
        current[k] = splits[k][0]
    tele = C.telescope(steps)
    zk, _ = forward(current, bs, x, f)
    assert abs(ce(zk, y) - ce(z0, y)) <= float(tele.total) + 1e-5
    drift = np.max(np.abs(zk - z0), axis=1)
    assert np.all(drift <= np.asarray(tele.eta) * (1 + 1e-5) + 1e-6)
    assert tele.provable


def test_zero_budget_leaves_logits_identical():
    ws, bs, x, y, f, name = make_net(3)
    x[:, :2] = 0.0  # inputs 0 and 1 never active on T
    a = ws[0]
    r = np.zeros_like(a)
    r[:, :2] = a[:, :2]
    s = a - r
    _, inputs = forward(ws, bs, x, f)
    b = C.data_path_budget(r, inputs[0], C.mlp_lipschitz(ws[1:], name))
    assert C.is_zero_budget(b) and float(b.budget) == 0.0
    z1 = forward(ws, bs, x, f)[0]
    z0 = forward(with_layer(ws, 0, s), bs, x, f)[0]
    np.testing.assert_array_equal(np.asarray(z0), np.asarray(z1))


def test_margin_ties_never_certified():
    z = jnp.array([[2.0, 2.0, 0.0], [3.0, 1.0, 0.0]])
    b = C.PathBudget(jnp.zeros(()), jnp.zeros(2), jnp.ones(2), jnp.zeros(2), True)
    cert = C.margin_certificate(z, b, 0.0, jnp.array([0, 0]))
    assert list(np.asarray(cert.certified)) == [False, True]
    assert float(cert.accuracy_change_bound) == pytest.approx(0.5)  # the tie is at risk
    assert float(C.margin_certificate(z, b, 1.0).share) == pytest.approx(0.5)


def test_affine_psi2_lipschitz_is_exact_and_estimate_agrees(rng):
    w = jnp.asarray(rng.normal(size=(5, 7)), jnp.float32)
    lip = C.mlp_lipschitz([w], "identity")
    u = jnp.asarray(rng.normal(size=(3, 7)), jnp.float32)
    est = C.jacobian_lipschitz_estimate(lambda v: w @ v + 1.0, u, 0.5 * u)
    np.testing.assert_allclose(est, lip, rtol=1e-6)
    # the l_inf operator norm is attained: x = sign of the heaviest row
    i = int(jnp.argmax(jnp.sum(jnp.abs(w), 1)))
    assert float(jnp.max(jnp.abs(w @ jnp.sign(w[i])))) == pytest.approx(lip, rel=1e-6)


def test_estimated_budget_never_certifies(rng):
    s = jnp.zeros((3, 4))
    r = jnp.ones((3, 4)) * 0.01
    b = C.data_path_budget(r, jnp.ones((5, 4)), 1.0, provable=False)
    cert = C.elastic_net_certificate(s, r, b, l1=10.0, l2=10.0)
    assert float(cert.slack) > 0 and not cert.certified and not cert.hypotheses_hold
    assert not C.margin_certificate(jnp.eye(5, 3), b).hypotheses_hold


def test_non_disjoint_split_is_not_a_mask_certificate():
    a = jnp.ones((2, 2))
    b = C.data_path_budget(0.5 * a, jnp.ones((3, 2)), 1.0)
    cert = C.elastic_net_certificate(0.5 * a, 0.5 * a, b, l1=100.0, l2=100.0)
    assert not cert.disjoint and not cert.certified


@pytest.mark.parametrize("seed", range(3))
def test_gaussian_sufficient_condition_monte_carlo(seed):
    rng = np.random.default_rng(seed)
    n, m, t_size, g, delta = 12, 9, 20, 1.5, 0.2
    psi1 = rng.normal(size=(t_size, m))
    lip = rng.uniform(0.5, 2.0, t_size)
    bound = float(C.gaussian_budget_bound(psi1, lip, g, n, delta))
    # statement 9 written out: (2/|T|) sum_s L_s ||v_s||_2 sqrt((2g/n) log(2 n |T| / delta))
    root = math.sqrt(2 * g / n * math.log(2 * n * t_size / delta))
    assert bound == pytest.approx(2 * np.mean(lip * np.linalg.norm(psi1, axis=1)) * root)
    rs = rng.normal(size=(400, n, m)) * math.sqrt(g / n)
    rv = np.abs(np.einsum("kij,tj->kti", rs, psi1))  # |(R v_s)_i| for every draw k
    budgets = 2 * np.mean(lip * rv.max(axis=2), axis=1)
    assert float(C.data_path_budget(rs[0], psi1, lip).budget) == pytest.approx(budgets[0], rel=1e-5)
    assert np.mean(budgets <= bound) >= 1 - delta
    # per-coordinate form behind it: max_{s,i} |(R v_s)_i| / ||v_s|| <= sqrt((2g/n) log(2 n |T| / delta))
    thr = math.sqrt(2 * g / n * math.log(2 * n * t_size / delta))
    ratio = rv / np.linalg.norm(psi1, axis=1)[None, :, None]
    assert np.mean(ratio.max(axis=(1, 2)) <= thr) >= 1 - delta
    # MP-edge form: g recovered from the edge sqrt(g)(1 + sqrt(m/n))
    assert C.gaussian_g_from_edge(math.sqrt(g) * (1 + math.sqrt(m / n)), n, m) == pytest.approx(g)


@pytest.mark.parametrize("seed", range(3))
def test_threshold_support_recovery(seed):
    rng = np.random.default_rng(seed)
    n, m, g, delta = 40, 30, 1.0, 0.1
    t = C.support_threshold(g, (n, m), delta)
    assert t == pytest.approx(math.sqrt(2 * g * math.log(2 * n * m / delta) / n))
    support = rng.uniform(size=(n, m)) < 0.1
    s = np.where(support, rng.choice([-1, 1], (n, m)) * rng.uniform(2.01 * t, 4 * t, (n, m)), 0)
    ok = []
    for _ in range(200):
        w = s + rng.normal(size=(n, m)) * math.sqrt(g / n)
        kept, t2 = C.threshold_support(w, g, delta)
        assert t2 == t
        ok.append(not np.any(kept & ~support) and np.all(kept[np.abs(s) > 2 * t]))
    assert np.mean(ok) >= 1 - delta


# ----------------------------------------------------------------------- negative control


def test_negative_control_exact_last_layer():
    """An L_s 10x too small must be caught: last layer, psi2 = + bias, L = 1 is exact."""
    ws, bs, x, y, f, name = make_net(5)
    rng = np.random.default_rng(0)
    s, r = random_split(ws[2], rng, 0.5)
    z1, inputs = forward(ws, bs, x, f)
    z0 = forward(with_layer(ws, 2, s), bs, x, f)[0]
    good = C.data_path_budget(r, inputs[2], C.mlp_lipschitz([], name))
    bad = C.data_path_budget(r, inputs[2], 0.1 * C.mlp_lipschitz([], name))
    assert C.check_logit_drift(z1, z0, good).holds
    check = C.check_logit_drift(z1, z0, bad)
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
    assert C.check_path_bound(thetas, ces, ce1, C.data_path_budget(r, psi1, 1.0)).holds
    bad = C.check_path_bound(thetas, ces, ce1, C.data_path_budget(r, psi1, 0.1))
    assert not bad.holds


def test_negative_control_hidden_layers_some_violation():
    found = 0
    for seed in range(6):
        ws, bs, x, y, f, name = make_net(seed)
        s, r = random_split(ws[1], np.random.default_rng(seed), 0.5)
        z1, inputs = forward(ws, bs, x, f)
        z0 = forward(with_layer(ws, 1, s), bs, x, f)[0]
        bad = C.data_path_budget(r, inputs[1], 0.1 * C.mlp_lipschitz(ws[2:], name))
        found += not C.check_logit_drift(z1, z0, bad).holds
    assert found > 0


# -------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "call",
    [
        lambda: C.data_path_budget(jnp.ones((2, 3)), jnp.ones((4, 5)), 1.0),
        lambda: C.data_path_budget(jnp.ones((2, 3)), jnp.ones((0, 3)), 1.0),
        lambda: C.data_path_budget(jnp.ones(3), jnp.ones((4, 3)), 1.0),
        lambda: C.mlp_lipschitz([jnp.ones((2, 2))], "gelu"),
        lambda: C.gaussian_budget_bound(jnp.ones((2, 2)), 1.0, 1.0, 2, delta=1.5),
        lambda: C.support_threshold(1.0, (3, 3), delta=0.0),
        lambda: C.elastic_net_certificate(jnp.ones((2, 2)), jnp.ones((2, 3)), None, 0.0, 0.0),
        lambda: C.telescope([]),
    ],
)
def test_bad_inputs_raise(call):
    with pytest.raises(ValueError):
        call()


# ---------------------------------------------------------------- Flax glue and the CLI


@pytest.fixture(scope="module")
def mlp_pair():
    from mpjax.models.mlp import MLP, init

    widths = (12, 10, 8, 4)
    model = MLP(widths, "relu")
    dense = init(widths, jax.random.key(0))
    mats = mtree.matrices(dense)
    pruned_mats = {
        p: jnp.where(jnp.abs(w) > jnp.median(jnp.abs(w)), w, 0.0) for p, w in mats.items()
    }
    pruned = mtree.replace_matrices(dense, pruned_mats, mtree.select(dense))
    x = jax.random.normal(jax.random.key(1), (32, 12))
    y = jnp.arange(32) % 4
    return model, dense, pruned, x, y


def test_capture_inputs_matches_sown_intermediates(mlp_pair):
    from mpjax.models.mlp import layer_inputs

    model, dense, _, x, _ = mlp_pair
    logits, psi = certify.capture_inputs(model, dense, x, ["Dense_1/kernel", "Dense_2/kernel"])
    ref_logits, ref = layer_inputs(model, dense, x)
    np.testing.assert_allclose(logits, ref_logits)
    np.testing.assert_allclose(psi["Dense_1/kernel"], ref[1])
    np.testing.assert_allclose(psi["Dense_2/kernel"], ref[2])


def test_certify_network_checks_hold(mlp_pair):
    model, dense, pruned, x, y = mlp_pair
    lip = functools.partial(certify.mlp_lipschitz_bound, activation="relu")
    layers = ["Dense_0/kernel", "Dense_1/kernel", "Dense_2/kernel"]
    rep = certify.certify_network(model, dense, pruned, x, y, layers, lip, l1=1e-3, l2=1e-3)
    assert rep.hypotheses_hold and len(rep.checks) > 0 and all(c.holds for c in rep.checks)
    assert len(rep.layers) == 3
    # the reported losses are those of the two networks (float64 numpy oracle)
    for got, p in ((rep.ce_dense, dense), (rep.ce_pruned, pruned)):
        z = np.asarray(model.apply({"params": p}, x), np.float64)
        assert got == pytest.approx(ce(z, np.asarray(y)), rel=1e-5)
    assert rep.ce_pruned != pytest.approx(rep.ce_dense, rel=1e-3)  # pruning did change CE
    assert all(r.path_check.holds for r in rep.layers)
    assert float(rep.telescoped.total) >= abs(rep.ce_pruned - rep.ce_dense)
    assert certify.mlp_lipschitz_bound(dense, "Dense_2/kernel") == (1.0, True)
    # a huge l2 makes the removal certified, and J did decrease
    rep2 = certify.certify_network(model, dense, pruned, x, y, layers, lip, l1=0.0, l2=100.0)
    assert rep2.elastic_certified
    pen = lambda p: O.params_penalty(p, 0.0, 100.0)  # noqa: E731
    j_dense = rep2.ce_dense + float(pen(dense))
    j_pruned = rep2.ce_pruned + float(pen(pruned))
    assert j_pruned - j_dense <= rep2.objective_bound + 1e-4 < 0


def test_certify_network_bad_inputs(mlp_pair):
    from mpjax.models.mlp import init

    model, dense, pruned, x, y = mlp_pair
    lip = functools.partial(certify.mlp_lipschitz_bound, activation="relu")
    other = init((12, 11, 8, 4), jax.random.key(0))
    with pytest.raises(ValueError, match="shape"):
        certify.certify_network(model, dense, other, x, y, ["Dense_0/kernel"], lip)
    with pytest.raises(ValueError, match="non-empty"):
        certify.certify_network(model, dense, pruned, x[:0], y[:0], ["Dense_0/kernel"], lip)
    with pytest.raises(ValueError, match="missing"):
        certify.certify_network(model, dense, pruned, x, y, ["Dense_0/bias"], lip)


@pytest.fixture(scope="module")
def ckpts(mlp_pair, tmp_path_factory):
    from mpjax import checkpoint

    model, dense, pruned, x, y = mlp_pair
    root = tmp_path_factory.mktemp("certify")
    masks = jax.tree_util.tree_map(lambda v: None, dense)
    masks = {k: {"kernel": jnp.asarray(pruned[k]["kernel"] != 0), "bias": None} for k in dense}
    checkpoint.save_params(root / "dense", dense, meta={"model": "mlp", "activation": "relu"})
    checkpoint.save_params(root / "pruned", pruned, masks=masks, meta={"activation": "relu"})
    wrong = {
        k: {"kernel": jnp.ones_like(m["kernel"]).at[0, 0].set(False), "bias": None}
        for k, m in masks.items()
    }
    checkpoint.save_params(root / "wrongmask", pruned, masks=wrong)
    np.savez(root / "data.npz", x=np.asarray(x), y=np.asarray(y))
    np.savez(root / "empty.npz", x=np.zeros((0, 12), np.float32), y=np.zeros(0, int))
    return root


def test_main_certify_runs(ckpts, capsys):
    argv = [
        str(ckpts / "dense"),
        str(ckpts / "pruned"),
        "--data",
        str(ckpts / "data.npz"),
        "--layer",
        "Dense_1/kernel",
        "Dense_2/kernel",
        "--l2",
        "1e-3",
        "--samples",
        "20",
    ]
    assert C.main_certify(argv) == 0
    out = capsys.readouterr().out
    assert "Dense_1/kernel" in out and "telescoped budget" in out and "VIOLATED" not in out
    assert C.main_certify(argv[:4] + ["--mask", str(ckpts / "pruned")]) == 0


def test_main_certify_bad_inputs(ckpts):
    data = ["--data", str(ckpts / "data.npz")]
    with pytest.raises(ValueError, match="not disjoint"):
        C.main_certify(
            [str(ckpts / "dense"), str(ckpts / "pruned"), *data, "--mask", str(ckpts / "wrongmask")]
        )
    with pytest.raises(ValueError, match="no samples"):
        C.main_certify(
            [str(ckpts / "dense"), str(ckpts / "pruned"), "--data", str(ckpts / "empty.npz")]
        )


def test_jacobian_estimate_is_labelled_and_below_the_bound(mlp_pair):
    model, dense, pruned, x, y = mlp_pair
    xs = x[:4]
    for path in ("Dense_1/kernel", "Dense_2/kernel"):
        a = mtree.matrices(dense)[path]
        r = a - mtree.matrices(pruned)[path]
        est = certify.jacobian_lipschitz(model, dense, xs, path, r)
        bound, provable = certify.mlp_lipschitz_bound(dense, path)
        assert provable and est.shape == (4,)
        assert np.all(est <= bound * (1 + 1e-5)) and np.all(est > 0)
        if path == "Dense_2/kernel":  # psi2 = + bias: the Jacobian is the identity
            np.testing.assert_allclose(est, 1.0, rtol=1e-6)
    removed = {p: w - mtree.matrices(pruned)[p] for p, w in mtree.matrices(dense).items()}
    fn = certify.estimated_lipschitz_fn(model, xs, removed)
    rep = certify.certify_network(model, dense, pruned, xs, y[:4], ["Dense_1/kernel"], fn, l2=1e3)
    assert not rep.hypotheses_hold and not rep.elastic_certified
    assert not rep.layers[0].elastic.certified and not rep.layers[0].budget.provable
