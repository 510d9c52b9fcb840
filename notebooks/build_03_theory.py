"""Build (and optionally execute) notebooks/03_theory.ipynb.

Usage::

    .venv/bin/python notebooks/build_03_theory.py               # run it and save the outputs
    .venv/bin/python notebooks/build_03_theory.py --no-execute  # cells only (MPJAX_NOTEBOOK_CONFIG
                                                                # selects small/full)
"""

from __future__ import annotations

import nbbuild

CELLS: list[tuple[str, str]] = [
    (
        "md",
        """# 03 — Numerical verification of the pruning certificates (P26)

A layer `A = S + R` (kept `S`, removed `R`) of a network `z(s) = psi2(A psi1(s))` is moved along
`A_theta = S + theta R`. With `L_s` a provable `l_inf -> l_inf` Lipschitz bound of `psi2`
(product of downstream `||W_k||_inf` for ReLU MLPs) the **data-path bound** is

`B_T(R) = (2/|T|) sum_s L_s ||R psi1(s)||_inf`

(the 2 is the `l_inf`-Lipschitz constant of cross-entropy: its gradient `softmax - e_y` has l1 norm
`2(1 - p_y) <= 2`). This notebook checks, on a ReLU MLP trained on Fashion-MNIST and on Gaussian
models, every statement of `mpjax.certificates` and **asserts** it: the CE path bound, margins,
zero bound, the elastic-net and additive-Frobenius certificates, prune–restore, one-sided
stationarity, multi-layer telescoping, the loss-reduction law
`L(S + vR) = L(W) - l(1 - v^2)||R||^2 + o(1)`, the Gaussian sufficient condition and
entrywise threshold support recovery. `MPJAX_NOTEBOOK_CONFIG=small` runs a reduced version.""",
    ),
    (
        "code",
        """%matplotlib inline
import math
import os
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from mpjax import data, tree
from mpjax.certificates import (
    capture_inputs,
    certify_network,
    check_logit_drift,
    check_margins,
    check_objective_bound,
    check_path_bound,
    cross_entropy,
    data_path_bound,
    elastic_net_certificate,
    format_report,
    frobenius_certificate,
    gaussian_g_from_edge,
    gaussian_path_bound,
    is_zero_bound,
    margin_certificate,
    mlp_lipschitz,
    mlp_lipschitz_bound,
    path_bound,
    predicted_margin,
    prune_restore,
    stationarity_bound,
    stationarity_eps,
    support_threshold,
)
from mpjax.models import MLP

CONFIG = os.environ.get("MPJAX_NOTEBOOK_CONFIG", "full")
SMALL = CONFIG == "small"
cfg = dict(
    n_train=12_000 if SMALL else 60_000,  # Fashion-MNIST training images, 1 epoch of Adam
    n_eval=1_000 if SMALL else 4_000,  # the sample set T (first test images)
    widths=(784, 256, 256, 10),
    gauss_N=(64, 128, 256, 512) if SMALL else (64, 128, 256, 512, 1024, 2048),
    gauss_seeds=3 if SMALL else 4,
    mc_draws=300 if SMALL else 2_000,
)
T0 = time.time()
CHECKS = []  # (statement, holds) of everything verified below


def record(name, holds):
    CHECKS.append((name, bool(holds)))
    assert holds, f"violated: {name}"


print(CONFIG, cfg)""",
    ),
    ("md", "## A small FC net on Fashion-MNIST (plain optax Adam, one epoch)"),
    (
        "code",
        """xtr, ytr = data.load_fashion_mnist("train")
xte, yte = data.load_fashion_mnist("test")
xtr = data.normalize(xtr[: cfg["n_train"]]).reshape(-1, 784)
ytr = ytr[: cfg["n_train"]]
X = data.normalize(xte[: cfg["n_eval"]]).reshape(-1, 784)
Y = yte[: cfg["n_eval"]]

model = MLP(cfg["widths"], "relu")
params = model.init(jax.random.key(0), X[:1])["params"]
opt = optax.adam(1e-3)
opt_state = opt.init(params)


@jax.jit
def train_step(params, opt_state, xb, yb):
    loss_fn = lambda p: cross_entropy(model.apply({"params": p}, xb), yb)  # noqa: E731
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


losses = []
for xb, yb in data.batches(xtr, ytr, 128, seed=0, epoch=0):
    params, opt_state, loss = train_step(params, opt_state, xb, yb)
    losses.append(float(loss))
apply = jax.jit(lambda p, x: model.apply({"params": p}, x))
z_dense = np.asarray(apply(params, X), np.float64)
acc_dense = float(np.mean(z_dense.argmax(1) == Y))
print(f"{len(losses)} steps, test accuracy on T: {acc_dense:.4f}")
assert np.mean(losses[-20:]) < np.mean(losses[:20]) and acc_dense > 0.7
plt.figure(figsize=(5, 2.5))
plt.plot(losses)
plt.xlabel("step")
plt.ylabel("train CE")
plt.title("training")
plt.show()""",
    ),
    (
        "code",
        """views = tree.select(params)
MATS = {p: np.asarray(w, np.float64) for p, w in tree.matrices(params, views).items()}
LAYERS = list(MATS)  # Dense_0/kernel, Dense_1/kernel, Dense_2/kernel
_, PSI = capture_inputs(model, params, X, LAYERS)  # psi1 of every layer on T
PSI = {p: np.asarray(v, np.float64) for p, v in PSI.items()}
LIP = {p: mlp_lipschitz_bound(params, p, "relu")[0] for p in LAYERS}  # prod ||W_k||_inf
THETAS = np.linspace(0.0, 1.0, 11)


def ce(z):
    return float(cross_entropy(jnp.asarray(z), jnp.asarray(Y)))


def logits_with(path, a):
    return np.asarray(apply(tree.replace_matrices(params, {path: jnp.asarray(a, jnp.float32)}, views), X), np.float64)


def magnitude_split(a, frac):
    keep = np.abs(a) > np.quantile(np.abs(a), frac)
    return np.where(keep, a, 0.0), np.where(keep, 0.0, a)


for p in LAYERS:
    print(f"{p}: shape {MATS[p].shape}, L_s = {LIP[p]:.3g}")""",
    ),
    (
        "md",
        "## 1. CE path bound: `|CE(A_theta) - CE(A_1)| <= (1 - theta) B_T(R)` (50% magnitude pruning)",
    ),
    (
        "code",
        """fig, axes = plt.subplots(1, 3, figsize=(12, 3))
for ax, p in zip(axes, LAYERS, strict=True):
    s, r = magnitude_split(MATS[p], 0.5)
    b = data_path_bound(r, PSI[p], LIP[p])
    ces = [ce(logits_with(p, s + t * r)) for t in THETAS]
    check = check_path_bound(THETAS, ces, ce(z_dense), b)
    record(f"1: CE path bound @ {p}", check.holds)
    ax.semilogy(THETAS[:-1], np.abs(np.array(ces) - ce(z_dense))[:-1], "o-", label="|CE(theta) - CE(1)|")
    ax.semilogy(THETAS[:-1], path_bound(THETAS, b)[:-1], "--", label="(1 - theta) B_T")
    ax.set_title(f"{p}  (B_T = {b.bound:.3g})")
    ax.set_xlabel("theta")
axes[0].legend()
plt.tight_layout()
plt.show()""",
    ),
    (
        "md",
        "## 2. Margins: no sample with dense margin `> 2 eta_s` changes its label; "
        "`|Δacc| <=` share with `|true margin| <= 2 eta_s`",
    ),
    (
        "code",
        """rows = []
for p in LAYERS:
    for frac in (0.1, 0.3, 0.5, 0.8):
        s, r = magnitude_split(MATS[p], frac)
        b = data_path_bound(r, PSI[p], LIP[p])
        for t in THETAS:
            z = logits_with(p, s + t * r)
            cert = margin_certificate(z_dense, b, float(t), Y)
            record(f"2: certified labels kept @ {p} {frac} theta={t:.1f}", check_margins(z_dense, z, cert).holds)
            record(f"1: logit drift <= eta_s @ {p} {frac} theta={t:.1f}", check_logit_drift(z_dense, z, b, float(t)).holds)
            dacc = abs(float(np.mean(z.argmax(1) == Y)) - acc_dense)
            record(f"2: accuracy change bound @ {p} {frac}", dacc <= cert.accuracy_change_bound + 1e-12)
        cert0 = margin_certificate(z_dense, b, 0.0, Y)
        rows.append((p, frac, cert0.share, cert0.accuracy_change_bound, dacc))
print(f"{'layer':<16}{'sparsity':>9}{'certified':>11}{'acc bound':>11}{'|dacc|':>9}")
for p, frac, share, bound, dacc in rows:
    print(f"{p:<16}{frac:9.1f}{share:11.3f}{bound:11.3f}{dacc:9.4f}")
s, r = magnitude_split(MATS["Dense_2/kernel"], 0.5)
b = data_path_bound(r, PSI["Dense_2/kernel"], LIP["Dense_2/kernel"])
margin = predicted_margin(jnp.asarray(z_dense))
plt.figure(figsize=(5, 3))
plt.scatter(2 * b.eta, margin, s=4, c=np.asarray(margin) > 2 * b.eta, cmap="coolwarm")
lim = float(max(2 * b.eta.max(), 1e-3))
plt.plot([0, lim], [0, lim], "k--", lw=1)
plt.xlabel("2 eta_s")
plt.ylabel("dense margin")
plt.title("Dense_2, 50% pruned: certified = above the diagonal")
plt.show()""",
    ),
    ("md", "## 3. Zero bound: `R psi1(s) = 0` on T leaves the logits identical"),
    (
        "code",
        """zero_in = {p: np.all(PSI[p] == 0, axis=0) for p in ("Dense_0/kernel", "Dense_1/kernel")}
print({p: int(v.sum()) for p, v in zero_in.items()}, "input coordinates never active on T")
assert sum(int(v.sum()) for v in zero_in.values()) > 0
for p, cols in zero_in.items():
    if cols.any():
        r = np.where(cols[None, :], MATS[p], 0.0)  # remove the weights those inputs feed
        b = data_path_bound(r, PSI[p], LIP[p])
        z0 = logits_with(p, MATS[p] - r)
        record(f"3: zero bound @ {p}", is_zero_bound(b) and b.bound == 0.0)
        record(f"3: logits identical @ {p}", np.array_equal(z0, z_dense))
        print(f"{p}: removed {int((r != 0).sum())} weights, B_T = {b.bound}, max |dz| = {np.abs(z0 - z_dense).max()}")""",
    ),
    (
        "md",
        "## 4. Elastic-net mask certificate: `J(S) < J(A)` whenever `B_T(R) < l2||R||_F^2 + l1||R||_1`",
    ),
    (
        "code",
        """pts = []
for p in ("Dense_1/kernel", "Dense_2/kernel"):
    for frac in (0.1, 0.3, 0.5, 0.7, 0.9):
        s, r = magnitude_split(MATS[p], frac)
        b = data_path_bound(r, PSI[p], LIP[p])
        dce = ce(logits_with(p, s)) - ce(z_dense)
        for l2 in (1e-4, 1e-3, 1e-2, 1e-1, 1.0):
            for l1 in (0.0, 1e-4, 1e-3, 1e-2):
                cert = elastic_net_certificate(s, r, b, l1, l2)
                # only the target layer's penalty changes: J(S) - J(A) = dCE - l2||R||^2 - l1||R||_1
                dj = dce - l2 * np.sum(r**2) - l1 * np.sum(np.abs(r))
                record(f"4: J(S)-J(A) <= bound @ {p} {frac} {l1} {l2}", dj <= float(cert.bound(0.0)) + 1e-6)
                if cert.certified:
                    record(f"4: certified -> J decreases @ {p} {frac} {l1} {l2}", dj < 0)
                pts.append((float(cert.bound(0.0)), dj, cert.certified))
pts = np.array(pts)
n_cert = int(pts[:, 2].sum())
print(f"{n_cert} of {len(pts)} (layer, sparsity, l1, l2) settings certified; all of them lowered J")
assert n_cert > 0  # the check above is not vacuous
# the whole path for one setting
p = "Dense_1/kernel"
s, r = magnitude_split(MATS[p], 0.5)
b = data_path_bound(r, PSI[p], LIP[p])
cert = elastic_net_certificate(s, r, b, 1e-3, 1e-1)
js = [ce(logits_with(p, s + t * r)) + 1e-1 * np.sum((s + t * r) ** 2) + 1e-3 * np.sum(np.abs(s + t * r)) for t in THETAS]
record("4: objective path bound", check_objective_bound(THETAS, js, js[-1], cert).holds)
plt.figure(figsize=(5, 3.5))
plt.scatter(pts[:, 0], pts[:, 1], s=8, c=pts[:, 2], cmap="coolwarm")
lo, hi = pts[:, :2].min(), pts[:, :2].max()
plt.plot([lo, hi], [lo, hi], "k--", lw=1)
plt.axhline(0, color="gray", lw=0.5)
plt.xscale("symlog", linthresh=1e-2)
plt.yscale("symlog", linthresh=1e-2)
plt.xticks([-100, -1, 0, 1, 100])
plt.yticks([-100, -1, 0, 1, 100])
plt.xlabel("certified bound on J(S) - J(A)")
plt.ylabel("measured J(S) - J(A)")
plt.title("red = certified (bound < 0)")
plt.show()""",
    ),
    ("md", "## 5. Additive Frobenius (no mask): SVD split `S` = top-k, `R` = the rest"),
    (
        "code",
        """p = "Dense_1/kernel"
u, sv, vt = np.linalg.svd(MATS[p], full_matrices=False)
for k in (8, 32, 128):
    s = (u[:, :k] * sv[:k]) @ vt[:k]
    r = MATS[p] - s
    b = data_path_bound(r, PSI[p], LIP[p])
    for l2 in (1e-3, 1e-1):
        cert = frobenius_certificate(s, r, b, l2)
        j2 = [ce(logits_with(p, s + t * r)) + l2 * np.sum((s + t * r) ** 2) for t in THETAS]
        record(f"5: additive Frobenius path bound @ k={k} l2={l2}", check_objective_bound(THETAS, j2, j2[-1], cert).holds)
    print(f"k={k}: B_T = {b.bound:.3g}, ||R||_F^2 = {np.sum(r**2):.3g}, <S,R> = {np.vdot(s, r):.2e}")""",
    ),
    ("md", "## 6. Prune–restore: `J(S + Q) <= J(A) - l2||P||^2 - l1||P||_1 + B_T(P)`"),
    (
        "code",
        """p, l1, l2 = "Dense_1/kernel", 1e-3, 1e-2
a = MATS[p]
order = np.abs(a).ravel().argsort()
tier = np.empty(a.size, int)
tier[order] = np.searchsorted([0.3 * a.size, 0.5 * a.size], np.arange(a.size), side="right")
tier = tier.reshape(a.shape)  # 0 = P (smallest 30%), 1 = Q (next 20%), 2 = S
P, Q, S = (np.where(tier == i, a, 0.0) for i in range(3))
pr = prune_restore(S, Q, P, PSI[p], LIP[p], l1, l2)


def J(m):
    return ce(logits_with(p, m)) + l2 * np.sum(m**2) + l1 * np.sum(np.abs(m))


j_a, j_sq, j_s = J(a), J(S + Q), J(S)
record("6: J(S+Q) - J(A) <= B_T(P) - l2||P||^2 - l1||P||_1", pr.hypotheses_hold and j_sq - j_a <= pr.bound_restore + 1e-6)
record("6: J(S) - J(A) <= B_T(Q+P) - ...", j_s - j_a <= pr.bound_prune_all + 1e-6)
print(f"J(S+Q)-J(A) = {j_sq - j_a:.4g} <= {pr.bound_restore:.4g};  J(S)-J(A) = {j_s - j_a:.4g} <= {pr.bound_prune_all:.4g}")
print("criterion B_T(Q+P) - B_T(P) > l2||Q||^2 + l1||Q||_1 (restore Q):", pr.restore_helps)""",
    ),
    ("md", "## 7. One-sided stationarity: `2 l2 ||R||^2 + l1 ||R||_1 <= B_T + eps`"),
    (
        "code",
        """p, l1, l2 = "Dense_1/kernel", 1e-3, 1e-2
s, r = magnitude_split(MATS[p], 0.5)


def ce_of(m):
    q = tree.replace_matrices(params, {p: m}, views)
    return cross_entropy(model.apply({"params": q}, X), jnp.asarray(Y))


grad = np.asarray(jax.grad(ce_of)(jnp.asarray(MATS[p], jnp.float32)), np.float64)
eps = stationarity_eps(grad, r, l1, l2)  # = -liminf [J(A_{1-h}) - J(A_1)] / h
h = 1e-3
slope = (J(MATS[p] - h * r) - J(MATS[p])) / h
print(f"one-sided slope {slope:.4f} vs -eps {-eps:.4f}")
st = stationarity_bound(r, data_path_bound(r, PSI[p], LIP[p]), l1, l2, eps)
record("7: stationarity inequality", st.holds)
record("7: finite-difference slope matches -eps", abs(slope + eps) < 0.05 * (1 + abs(eps)))
print(f"2 l2||R||^2 + l1||R||_1 = {st.lhs:.4g} <= B_T + eps = {st.rhs:.4g}")""",
    ),
    (
        "md",
        "## 8. Multi-layer telescoping: every layer at 50%, bounds in the intermediate networks",
    ),
    (
        "code",
        """pruned_mats = {p: jnp.asarray(magnitude_split(MATS[p], 0.5)[0], jnp.float32) for p in LAYERS}
pruned = tree.replace_matrices(params, pruned_mats, views)
lip_fn = lambda prm, path: mlp_lipschitz_bound(prm, path, "relu")  # noqa: E731
rep = certify_network(model, params, pruned, X, Y, LAYERS, lip_fn, l1=1e-4, l2=1e-3)
print(format_report(rep, 1e-4, 1e-3))
for c in rep.checks:
    record(f"8: {c.statement}", c.holds)
record("8: |CE(pruned) - CE(dense)| <= sum_k B_T^(k)", abs(rep.ce_pruned - rep.ce_dense) <= float(rep.telescoped.total))""",
    ),
    (
        "md",
        """## Gaussian models
3-layer net `X = W3 relu(W2 relu(W1 s))`, `W2 = S2 + R2`: `W1` iid `N(0, 1/N)` (so `||W1 s|| = O(1)`),
`S2` a rank-10 signal, `R2` iid `N(0, g/N)`, `W3` reading the signal directions (`||W3||_inf = O(N^(1/4))`).
`a_N(s) = ||W3||_inf ||R2 h1(s)||_inf ~ N^(-1/4) sqrt(log N)` shrinks with N.

### Loss-reduction law `L(S + vR) = L(W) - l(1 - v^2)||R||^2 + e_N(v)`, `e_N -> 0`""",
    ),
    (
        "code",
        """def relu(v):
    return np.maximum(v, 0.0)


def ce_np(z, y):
    m = z.max(1, keepdims=True)
    return float(np.mean(m[:, 0] + np.log(np.exp(z - m).sum(1)) - z[np.arange(len(y)), y]))


def gaussian_model(N, seed, d0=20, k=10, n_samples=512, g=1.0, sig=3.0):
    rng = np.random.default_rng(seed)
    W1 = rng.normal(size=(N, d0)) / math.sqrt(N)
    Yd = W1[:, :k] / np.linalg.norm(W1[:, :k], axis=0)  # signal input directions
    Xd = rng.choice([-1.0, 1.0], size=(N, k)) * N**-0.25  # signal output directions
    S2 = sig * Xd @ Yd.T
    R2 = rng.normal(size=(N, N)) * math.sqrt(g / N)
    Cm = rng.normal(size=(10, k))
    W3 = 0.5 * Cm @ Xd.T / math.sqrt(N)
    s = rng.normal(size=(n_samples, d0))
    y = np.argmax(s[:, :k] @ (sig * Cm).T / 4 + 0.5 * rng.normal(size=(n_samples, 10)), 1)
    return W1, S2, R2, W3, s, y


lam, vs = 1e-3, np.linspace(0.0, 1.0, 6)
err, bnd, main = {}, {}, {}
for N in cfg["gauss_N"]:
    e_all, b_all = [], []
    for seed in range(cfg["gauss_seeds"]):
        W1, S2, R2, W3, s, y = gaussian_model(N, seed)
        h1 = relu(s @ W1.T)

        def loss(a):
            return ce_np(relu(h1 @ a.T) @ W3.T, y) + lam * np.sum(a**2)

        b = data_path_bound(R2, h1, mlp_lipschitz([W3], "relu"))
        l_w, sr, r2 = loss(S2 + R2), float(np.vdot(S2, R2)), float(np.sum(R2**2))
        for v in vs:
            e = loss(S2 + v * R2) - l_w + lam * (1 - v**2) * r2
            bound = (1 - v) * b.bound + 2 * lam * (1 - v) * abs(sr)  # statements 1 + 5
            record(f"law: |e_N(v)| <= (1-v)B_T + 2l(1-v)|<S,R>| @ N={N}", abs(e) <= bound + 1e-9)
            e_all.append(abs(e))
            b_all.append(bound)
    err[N], bnd[N], main[N] = np.mean(e_all), np.mean(b_all), lam * r2
    print(f"N={N:5d}: mean |e_N| = {err[N]:.2e}, mean bound = {bnd[N]:.3g}, l||R||^2 = {main[N]:.3g}")
Ns = np.array(cfg["gauss_N"])
record("law: error shrinks as N grows", err[Ns[-1]] < 0.5 * err[Ns[0]])
plt.figure(figsize=(5, 3.5))
plt.loglog(Ns, [err[n] for n in Ns], "o-", label="mean |e_N(v)| (measured)")
plt.loglog(Ns, [bnd[n] for n in Ns], "s--", label="certified bound")
plt.loglog(Ns, [main[n] for n in Ns], "^:", label="l ||R||_F^2 (main term)")
plt.xlabel("N")
plt.legend()
plt.title("L(S+vR) - [L(W) - l(1-v^2)||R||^2]")
plt.show()""",
    ),
    (
        "md",
        "### Gaussian sufficient condition (statement 9) by Monte Carlo, and threshold support recovery (10)",
    ),
    (
        "code",
        """rng = np.random.default_rng(0)
N, g, delta = 128, 1.0, 0.1
W1, S2, R2, W3, s, y = gaussian_model(N, 0)
h1 = relu(s[:128] @ W1.T)
lip = mlp_lipschitz([W3], "relu")
bound = gaussian_path_bound(h1, lip, g, N, delta)
bt_draws = []
for _ in range(cfg["mc_draws"] // 50):
    rs = rng.normal(size=(50, N, N)) * math.sqrt(g / N)
    bt_draws.append(2 * lip * np.abs(np.einsum("kij,tj->kti", rs, h1)).max(axis=2).mean(axis=1))
bt_draws = np.concatenate(bt_draws)
assert abs(data_path_bound(rs[-1], h1, lip).bound - bt_draws[-1]) < 1e-6 * bt_draws[-1]
coverage = float(np.mean(bt_draws <= bound))
record("9: P(B_T(R) <= Gaussian bound) >= 1 - delta", coverage >= 1 - delta)
# MP-edge form: g read off the spectrum edge sqrt(g)(1 + sqrt(m/n)) of one draw
g_hat = gaussian_g_from_edge(np.linalg.svd(rs[0], compute_uv=False)[0], N, N)
bound_edge = gaussian_path_bound(h1, lip, g_hat, N, delta)
print(f"coverage {coverage:.3f} (>= {1 - delta}); bound {bound:.3g}, MP-edge form {bound_edge:.3g} (g_hat = {g_hat:.3f})")
# sufficient condition: certified once l2 E||R||_F^2 = l2 g N exceeds the bound
print(f"elastic-net removal of R certified w.p. >= {1 - delta} once l2 > {bound / (g * N):.3g}")

n_rows, n_cols, ok = 60, 40, []
t = support_threshold(g, (n_rows, n_cols), delta)
support = rng.uniform(size=(n_rows, n_cols)) < 0.1
S_true = np.where(support, rng.choice([-1, 1], (n_rows, n_cols)) * rng.uniform(2.01 * t, 4 * t, (n_rows, n_cols)), 0)
for _ in range(cfg["mc_draws"]):
    W = S_true + rng.normal(size=(n_rows, n_cols)) * math.sqrt(g / n_rows)
    kept = np.abs(W) > t
    ok.append(not np.any(kept & ~support) and bool(np.all(kept[support])))
record("10: threshold recovers the support w.p. >= 1 - delta", np.mean(ok) >= 1 - delta)
print(f"threshold t = {t:.3f}: exact support recovery in {np.mean(ok):.3f} of draws")
fig, ax = plt.subplots(figsize=(5, 3))
ax.hist(bt_draws, bins=40, label="B_T(R), R iid N(0, g/n)")
ax.axvline(bound, color="r", label="bound (prob >= 1 - delta)")
ax.axvline(bound_edge, color="r", ls=":", label="MP-edge form")
ax.legend()
plt.show()""",
    ),
    ("md", "## Summary"),
    (
        "code",
        """n_ok = sum(h for _, h in CHECKS)
print(f"{n_ok} / {len(CHECKS)} checks hold; runtime {time.time() - T0:.1f} s ({CONFIG})")
for name in sorted({n.split(" @ ")[0] for n, _ in CHECKS}):
    print(f"  {name}: {sum(h for n, h in CHECKS if n.split(' @ ')[0] == name)} ok")
assert n_ok == len(CHECKS)""",
    ),
]


if __name__ == "__main__":
    nbbuild.main(CELLS, "03_theory.ipynb")
