"""AlphaPruning-style budgets: the weighted mean hits the target, the order follows alpha."""

import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import tree
from mpjax.pruning import alpha, registry


def test_unclipped_budget_equals_the_closed_form():
    alphas = {"a": 2.0, "b": 3.0, "c": 5.0, "d": 4.0}
    sizes = {"a": 100, "b": 300, "c": 50, "d": 250}
    S, eps = 0.5, 0.2
    out = alpha.alpha_sparsities(alphas, sizes, S, eps=eps)
    x = np.array(list(alphas.values()))
    n = np.array(list(sizes.values()), float)
    raw = S - eps + 2 * eps * (x - x.min()) / (x.max() - x.min())
    expect = raw + (S - np.sum(n * raw) / n.sum())  # one shift, closed form without clipping
    np.testing.assert_allclose(list(out.values()), expect, atol=1e-9)
    assert out["c"] > out["d"] > out["b"] > out["a"]  # larger alpha -> more sparsity


@pytest.mark.parametrize("S", [0.0, 0.1, 0.5, 0.85, 0.95, 0.99])
def test_weighted_mean_is_the_target_even_with_clipping(rng, S):
    alphas = {f"l{i}": float(a) for i, a in enumerate(rng.uniform(2, 8, 12))}
    sizes = {p: int(s) for p, s in zip(alphas, rng.integers(10, 1000, 12), strict=True)}
    out = alpha.alpha_sparsities(alphas, sizes, S)
    v = np.array(list(out.values()))
    n = np.array([sizes[p] for p in out], float)
    assert np.sum(n * v) / n.sum() == pytest.approx(S, abs=1e-9)
    assert v.min() >= 0 and v.max() <= 0.99
    order = np.argsort([alphas[p] for p in out])
    assert np.all(np.diff(v[order]) >= -1e-12)  # monotone in alpha
    if 0.2 < S < 0.79:  # no clipping: the spread is exactly 2 eps
        assert v.max() - v.min() == pytest.approx(0.4)
    else:  # clipping changes the spread (the plain shift would miss S)
        assert v.max() - v.min() < 0.4 - 1e-6 or S == 0.0


def test_degenerate_alphas_and_bad_targets():
    out = alpha.alpha_sparsities({"a": 3.0, "b": 3.0, "c": None}, {"a": 1, "b": 2, "c": 3}, 0.4)
    assert all(v == pytest.approx(0.4) for v in out.values())
    out = alpha.alpha_sparsities({"a": 2.0, "b": None, "c": 6.0}, {"a": 1, "b": 1, "c": 1}, 0.5)
    assert out["b"] == pytest.approx(0.5) and out["a"] < 0.5 < out["c"]
    with pytest.raises(ValueError, match="sparsity=1.2"):
        alpha.alpha_sparsities({"a": 2.0}, {"a": 1}, 1.2)


def hill(W, k):
    """Hill exponent of the eigenvalues of W^T W from a numpy SVD (independent oracle)."""
    e = np.sort(np.linalg.svd(np.asarray(W, np.float64), compute_uv=False) ** 2)[::-1]
    return 1.0 + 1.0 / np.mean(np.log(e[:k] / e[k]))


def params_with_tails(rng):
    """Three Dense layers: two Gaussian (light tail) and one with power-law singular values."""
    def powerlaw(m, n):
        U, _ = np.linalg.qr(rng.normal(size=(m, m)))
        V, _ = np.linalg.qr(rng.normal(size=(n, n)))
        s = np.arange(1, min(m, n) + 1) ** -1.0
        return (U[:, : len(s)] * s) @ V[: len(s)]
    return {"Dense_0": {"kernel": jnp.asarray(rng.normal(size=(48, 64)), jnp.float32)},
            "Dense_1": {"kernel": jnp.asarray(powerlaw(64, 64), jnp.float32)},
            "Dense_2": {"kernel": jnp.asarray(rng.normal(size=(64, 32)), jnp.float32)}}


def test_alpha_budget_from_spectra_follows_numpy_hill(rng):
    params = params_with_tails(rng)
    budget = tree.flatten(alpha.alpha_budget(params, 0.5))
    views = tree.select(params)
    mats = tree.matrices(params, views)
    a = {p: hill(mats[p], min(views[p].shape) // 2) for p in views}
    order = sorted(views, key=a.get)
    assert order[0] == "Dense_1/kernel"  # the heavy-tailed layer is pruned least
    assert [budget[p] for p in order] == sorted(budget.values())
    n = {p: v.d_out * v.d_in for p, v in views.items()}
    assert sum(n[p] * budget[p] for p in n) / sum(n.values()) == pytest.approx(0.5)


def test_layer_budget_kinds_reach_the_target(rng):
    params = params_with_tails(rng)
    views = tree.select(params)
    n = {p: v.d_out * v.d_in for p, v in views.items()}
    for kind in alpha.BUDGET_KINDS:
        b = tree.flatten(alpha.layer_budget(params, kind, 0.6))
        mean = sum(n[p] * b[p] for p in n) / sum(n.values())
        assert mean == pytest.approx(0.6, abs=1e-3), kind
        if kind == "uniform":
            assert set(b.values()) == {0.6}
    with pytest.raises(ValueError, match="budget kind='nope'"):
        alpha.layer_budget(params, "nope", 0.5)


def test_alpha_budget_drives_the_baselines(rng):
    params = params_with_tails(rng)
    budget = alpha.alpha_budget(params, 0.5)
    X = {"Dense_0/kernel": rng.normal(size=(40, 48)).astype(np.float32)}
    _, m, rep = registry.prune(params, "wanda", sparsity=0.5, budget=budget, calib_inputs=X)
    s = tree.flatten(budget)["Dense_0/kernel"]
    removed = (~np.asarray(m["Dense_0"]["kernel"])).sum(axis=0)  # Linen kernel: (d_in, d_out)
    assert np.all(removed == int(np.floor(s * 48 + 1e-9)))
    assert m["Dense_1"]["kernel"] is None and "Dense_1/kernel" in rep["skipped"]
