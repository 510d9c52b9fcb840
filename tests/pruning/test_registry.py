"""Spectral transforms, CAST, SER and the prune() dispatcher."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import tree
from mpjax.mp import fits as mp
from mpjax.pruning import cast, masks, ser
from mpjax.pruning import registry as prune


def spiked(rng, n=160, m=120, thetas=(8.0, 6.0, 5.0)):
    """W = S + R: planted rank-3 signal (singular values thetas) plus N(0, 1/m) noise."""
    u = np.linalg.qr(rng.normal(size=(n, len(thetas))))[0]
    v = np.linalg.qr(rng.normal(size=(m, len(thetas))))[0]
    S = (u * np.array(thetas)) @ v.T
    R = rng.normal(size=(n, m)) / np.sqrt(m)
    return S.astype(np.float32), R.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_truncation_recovers_spiked_signal(seed):
    S, R = spiked(np.random.default_rng(seed))
    W = S + R
    s = np.linalg.svd(W, compute_uv=False)
    edge = mp.fit(s, W.shape).edge
    assert int(prune.truncation_rank(jnp.asarray(s), edge, 0.0)) == 3
    Wt = np.asarray(prune.spectral_truncate(jnp.asarray(W), edge, 0.0))
    noise_op = np.linalg.norm(R, 2)
    # rank(S) = 3 => ||P_3(W) - S|| <= s_4(W) + ||R|| <= 2 ||R||
    assert np.linalg.norm(Wt - S, 2) <= 2 * noise_op
    # and the noise kept is a rank-3 sliver of ||R||_F
    assert np.linalg.norm(Wt - S) <= 0.35 * np.linalg.norm(R)
    assert np.linalg.norm(Wt - S) < np.linalg.norm(W - S)


def test_truncate_fraction_and_jit(rng):
    W = jnp.asarray(rng.normal(size=(30, 20)), jnp.float32)
    s = np.linalg.svd(np.asarray(W), compute_uv=False)
    edge = float(s[2]) + 1e-3  # 2 spikes
    f = jax.jit(prune.spectral_truncate)
    for frac, r in [(0.0, 2), (0.5, 11), (1.0, 20)]:
        out = np.asarray(f(W, edge, frac))
        sv = np.linalg.svd(out, compute_uv=False)
        assert np.sum(sv > 1e-4 * sv[0]) == r
        np.testing.assert_allclose(sv[:r], s[:r], rtol=1e-4)
    np.testing.assert_allclose(np.asarray(prune.spectral_truncate(W, edge, 1.0)), W, atol=1e-5)
    assert prune.spectral_truncate(W.astype(jnp.bfloat16), edge, 0.5).dtype == jnp.bfloat16


def test_factorize(rng):
    W = jnp.asarray(rng.normal(size=(12, 5)) @ rng.normal(size=(5, 9)), jnp.float32)
    f = prune.factorize(W, 5)
    assert f.W1.shape == (5, 9) and f.W2.shape == (12, 5)
    np.testing.assert_allclose(np.asarray(f.W2 @ f.W1), np.asarray(W), atol=1e-4)
    # W1 = diag(sqrt s) V^T has rows of norm sqrt(s), as does W2's columns
    np.testing.assert_allclose(np.linalg.norm(f.W1, axis=1), np.linalg.norm(f.W2, axis=0),
                               rtol=1e-4)
    assert prune.factorization_saves((12, 9), 5) is True
    assert prune.factorization_saves((12, 9), 6) is False
    with pytest.raises(ValueError, match="rank=10"):
        prune.factorize(W, 10)


def test_lowrank_pytree_with_edges_and_fit(rng):
    S, R = spiked(rng)
    params = {"Dense_0": {"kernel": jnp.asarray((S + R).T), "bias": jnp.zeros(160)}}
    out, info = prune.lowrank(params, 0.0)  # edge from mp.fit (BEMA)
    assert info.rank["Dense_0/kernel"] == 3 and out["Dense_0"]["bias"] is params["Dense_0"]["bias"]
    out2, info2 = prune.lowrank(params, 0.5, edges={"Dense_0/kernel": 100.0})
    assert info2.rank["Dense_0/kernel"] == 60
    with pytest.raises(ValueError, match="exactly one"):
        prune.lowrank(params)


def test_cast_matches_bruteforce(rng):
    W = rng.normal(size=(6, 16)).astype(np.float32)
    X = (rng.normal(size=(200, 16)) @ rng.normal(size=(16, 16))).astype(np.float32)
    M = rng.random((6, 16)) > 0.5
    for k, n in [(2, 4), (3, 8)]:
        C = np.asarray(cast.block_covariances(X, n))
        pats = cast.candidate_patterns(k, n)
        assert len(pats) == len(list(itertools.combinations(range(n), k)))
        res = cast.cast_matrix(jnp.asarray(W), jnp.asarray(C), jnp.asarray(pats), k=k, n=n,
                               M_ser=jnp.asarray(M), alpha_ser=0.3, chunk=5)
        u, Mg = W.reshape(6, -1, n), M.reshape(6, -1, n)
        cbar = np.mean(u * u * np.diagonal(C, axis1=1, axis2=2)[None])
        got = np.asarray(res.mask).reshape(6, -1, n)
        for i, g in itertools.product(range(6), range(16 // n)):
            costs = [((1 - p) * u[i, g]) @ C[g] @ ((1 - p) * u[i, g])
                     + 0.3 * cbar * np.sum(p != Mg[i, g]) for p in pats]
            assert np.isclose(costs[int(np.argmin(costs))],
                              costs[[tuple(p) for p in pats.tolist()].index(tuple(got[i, g]))],
                              rtol=1e-5)


@pytest.mark.parametrize(("k", "n", "exhaustive"), [(2, 4, None), (4, 8, None), (8, 16, False)])
def test_cast_cost_not_above_magnitude(rng, k, n, exhaustive):
    params = {f"Dense_{i}": {"kernel": jnp.asarray(rng.normal(size=(32, 24)), jnp.float32)}
              for i in range(2)}
    calib = {f"Dense_{i}/kernel": (rng.normal(size=(256, 32)) * np.linspace(0.1, 3, 32))
             @ rng.normal(size=(32, 32)) for i in range(2)}
    out, m, rep = prune.prune(params, "cast", f"{k}:{n}", calib_inputs=calib, alpha_ser=0.0,
                              exhaustive=exhaustive, max_patterns=64)
    masks.validate_nm(m, k, n)

    def cost(r, X):  # numpy oracle: mean_t sum_{i,g} (r_ig . x_tg)^2, float64
        X = np.asarray(X, np.float64).reshape(len(X), -1, n)
        return sum(np.sum((X[:, g] @ r.reshape(len(r), -1, n)[:, g].T) ** 2)
                   for g in range(X.shape[1])) / len(X)

    assert set(rep["cast_cost"]) == set(calib)
    totals = np.zeros(2)
    for p, X in calib.items():
        name = p.split("/")[0]
        W = np.asarray(params[name]["kernel"], np.float64).T  # view (d_out, d_in)
        kept = np.asarray(out[name]["kernel"], np.float64).T
        # magnitude k:n: keep the k largest |W| of every group of n consecutive inputs
        g = np.abs(W).reshape(len(W), -1, n)
        keep = np.zeros(g.shape, bool)
        np.put_along_axis(keep, np.argsort(-g, axis=-1, kind="stable")[..., :k], True, axis=-1)
        ours = np.array([cost(W - kept, X), cost(np.where(keep.reshape(W.shape), 0.0, W), X)])
        np.testing.assert_allclose([rep["cast_cost"][p]["cast"], rep["cast_cost"][p]["magnitude"]],
                                   ours, rtol=1e-4)
        assert ours[0] > 0 and ours[0] <= ours[1] * (1 + 1e-5), p
        totals += ours
    assert totals[0] < totals[1]


def test_candidate_patterns_sampling():
    assert len(cast.candidate_patterns(8, 16)) == 1024
    full = cast.candidate_patterns(8, 16, exhaustive=True)
    assert full.shape == (12870, 16) and np.all(full.sum(1) == 8)
    assert len({r.tobytes() for r in full}) == 12870
    assert len(cast.candidate_patterns(6, 12)) == 924


def _quad_params(rng):
    return {"Dense_0": {"kernel": jnp.asarray(rng.normal(size=(16, 8)), jnp.float32),
                        "bias": jnp.zeros(8)}}


def test_ser_restores_what_the_gradient_wants(rng):
    params = _quad_params(rng)
    target = np.asarray(params["Dense_0"]["kernel"]).copy()
    target[0, 0] = 50.0  # the loss wants entry (0, 0) large
    params["Dense_0"]["kernel"] = params["Dense_0"]["kernel"].at[0, 0].set(1e-4)

    def grad_fn(p):
        return jax.grad(lambda q: 0.5 * jnp.sum((q["Dense_0"]["kernel"] - target) ** 2))(p)

    out, m, info = ser.ser(params, 0.5, grad_fn, steps=1, lr=0.1)
    mk = np.asarray(m["Dense_0"]["kernel"])
    assert mk.size - mk.sum() == 64
    assert not np.asarray(info.over_masks["Dense_0"]["kernel"])[0, 0]
    assert mk[0, 0] and int(info.n_restored) == 4
    kept = np.asarray(info.over_masks["Dense_0"]["kernel"])
    np.testing.assert_array_equal(np.asarray(out["Dense_0"]["kernel"])[kept],
                                  np.asarray(params["Dense_0"]["kernel"])[kept])
    p1, m1 = ser.hybrid(params, 0.15, grad_fn)
    ref = masks.magnitude_masks(params, 0.15, scope="global")
    np.testing.assert_array_equal(np.asarray(m1["Dense_0"]["kernel"]),
                                  np.asarray(ref["Dense_0"]["kernel"]))


def test_prune_dispatcher_errors_and_report(rng):
    params = {"Dense_0": {"kernel": jnp.asarray(rng.normal(size=(10, 8)), jnp.float32)},
              "Dense_1": {"kernel": jnp.asarray(rng.normal(size=(8, 4)), jnp.float32)}}
    with pytest.raises(ValueError, match="contradicts"):
        prune.prune(params, "magnitude", "2:4", 0.3)
    with pytest.raises(ValueError, match=r"sparsity=1.0 is outside \[0, 1\)"):
        prune.prune(params, "magnitude", "unstructured", 1.0)
    with pytest.raises(ValueError, match="sparsity=-0.2"):
        prune.prune(params, "magnitude", "unstructured", -0.2)
    with pytest.raises(ValueError, match="method='cast' is an N:M"):
        prune.pruner("cast", "unstructured", 0.5)
    with pytest.raises(ValueError, match="needs grad_fn"):
        prune.pruner("ser", "unstructured", 0.5)
    with pytest.raises(ValueError, match="Dense_0/kernel.*d_in=10"):
        prune.prune(params, "magnitude", "2:4")
    with pytest.warns(UserWarning):
        out, m, rep = prune.prune(params, "magnitude", "2:4", on_indivisible="skip")
    assert rep["skipped"] == {"Dense_0/kernel": "d_in=10 is not divisible by n=4"}
    assert m["Dense_0"]["kernel"] is None
    masks.validate_nm(m, 2, 4)
    _, m, rep = prune.prune(params, "lowrank", sparsity=0.5)
    assert rep["lowrank_density"] <= 0.5 and jax.tree.leaves(m) == []
    _, m, rep = prune.prune(params, "magnitude", sparsity=0.25, tokens=3)
    assert rep["summary"]["sparsity"] == pytest.approx(0.25)
    assert rep["summary"]["dense_macs"] == 3 * (80 + 32)
    _, m, rep = prune.prune(params, "seb", sparsity=0.5)  # signals from mp.fit
    assert set(rep["layer_weights"]) == {"Dense_0/kernel", "Dense_1/kernel"}
    assert rep["summary"]["sparsity"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="budget= is used by method='magnitude' only"):
        prune.prune(params, "seb", sparsity=0.5, budget={})


def test_prune_ser_seb_and_cast_from_covariances(rng):
    params = {f"Dense_{i}": {"kernel": jnp.asarray(rng.normal(size=(16, 16)), jnp.float32)}
              for i in range(2)}
    x = jnp.asarray(rng.normal(size=(32, 16)), jnp.float32)

    def grad_fn(p):
        f = lambda q: jnp.sum((x @ q["Dense_0"]["kernel"] @ q["Dense_1"]["kernel"]) ** 2)  # noqa: E731
        return jax.grad(f)(p)

    _, m, rep = prune.prune(params, "hybrid", sparsity=0.4, grad_fn=grad_fn, seb=True,
                            ser_kwargs=dict(steps=1, lr=1e-3))
    assert rep["summary"]["sparsity"] == pytest.approx(0.4, abs=1 / 512)
    assert set(rep["layer_weights"]) == set(tree.select(params))
    covs = {p: cast.block_covariances(x, 4) for p in tree.select(params)}
    _, m, rep = prune.prune(params, "cast", "2:4", calib_covs=covs, grad_fn=grad_fn)
    masks.validate_nm(m, 2, 4)
    with pytest.raises(ValueError, match="calib_covs shape"):
        prune.prune(params, "cast", "4:8", calib_covs=covs)
