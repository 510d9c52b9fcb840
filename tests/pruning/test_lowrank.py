"""Spectral transforms: bulk truncation, factorisation, pytree-level low rank."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import mp
from mpjax.pruning import lowrank


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
    assert int(lowrank.truncation_rank(jnp.asarray(s), edge, 0.0)) == 3
    Wt = np.asarray(lowrank.spectral_truncate(jnp.asarray(W), edge, 0.0))
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
    f = jax.jit(lowrank.spectral_truncate)
    for frac, r in [(0.0, 2), (0.5, 11), (1.0, 20)]:
        out = np.asarray(f(W, edge, frac))
        sv = np.linalg.svd(out, compute_uv=False)
        assert np.sum(sv > 1e-4 * sv[0]) == r
        np.testing.assert_allclose(sv[:r], s[:r], rtol=1e-4)
    np.testing.assert_allclose(np.asarray(lowrank.spectral_truncate(W, edge, 1.0)), W, atol=1e-5)
    assert lowrank.spectral_truncate(W.astype(jnp.bfloat16), edge, 0.5).dtype == jnp.bfloat16


def test_factorize(rng):
    W = jnp.asarray(rng.normal(size=(12, 5)) @ rng.normal(size=(5, 9)), jnp.float32)
    f = lowrank.factorize(W, 5)
    assert f.W1.shape == (5, 9) and f.W2.shape == (12, 5)
    np.testing.assert_allclose(np.asarray(f.W2 @ f.W1), np.asarray(W), atol=1e-4)
    # W1 = diag(sqrt s) V^T has rows of norm sqrt(s), as does W2's columns
    np.testing.assert_allclose(np.linalg.norm(f.W1, axis=1), np.linalg.norm(f.W2, axis=0),
                               rtol=1e-4)
    assert lowrank.factorization_saves((12, 9), 5) is True
    assert lowrank.factorization_saves((12, 9), 6) is False
    with pytest.raises(ValueError, match="rank=10"):
        lowrank.factorize(W, 10)


def test_lowrank_pytree_with_edges_and_fit(rng):
    S, R = spiked(rng)
    params = {"Dense_0": {"kernel": jnp.asarray((S + R).T), "bias": jnp.zeros(160)}}
    out, info = lowrank.lowrank(params, 0.0)  # edge from mp.fit (BEMA)
    assert info.rank["Dense_0/kernel"] == 3 and out["Dense_0"]["bias"] is params["Dense_0"]["bias"]
    out2, info2 = lowrank.lowrank(params, 0.5, edges={"Dense_0/kernel": 100.0})
    assert info2.rank["Dense_0/kernel"] == 60
    with pytest.raises(ValueError, match="exactly one"):
        lowrank.lowrank(params)


def test_lowrank_density_never_counts_more_parameters_than_the_dense_layer():
    from mpjax.pruning import prune

    # a (3, 1) layer: rank clipped to 1, whose factors (4 numbers) would be larger than W (3)
    params = {"tiny": {"kernel": jnp.ones((1, 3))}, "big": {"kernel": jnp.ones((64, 64))}}
    _, _, report = prune(params, "lowrank", "unstructured", 0.5)
    assert report["lowrank_rank"] == {"big/kernel": 16, "tiny/kernel": 1}
    # was (4 + 16 * 128) / (3 + 64 * 64): the tiny layer counted at its 4 factor numbers
    assert report["lowrank_density"] == pytest.approx((3 + 16 * 128) / (3 + 64 * 64))
