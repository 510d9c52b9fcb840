"""The cyclic singular-value procedure and singular-vector sparsification on a tiny MLP-like tree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import tree
from mpjax.pruning import cyclic


def spiked_tree(rng, d=64, layers=2):
    out = {}
    for i in range(layers):
        u, v = rng.normal(size=(d, 2)), rng.normal(size=(d, 2))
        S = (np.linalg.qr(u)[0] * [6.0, 4.0]) @ np.linalg.qr(v)[0].T
        W = S + rng.normal(size=(d, d)) / np.sqrt(d)
        out[f"Dense_{i}"] = {"kernel": jnp.asarray(W.T, jnp.float32), "bias": jnp.zeros(d)}
    return out


def test_sv_sparsify_keeps_spectrum_and_spikes(rng):
    W = jnp.asarray(spiked_tree(rng)["Dense_0"]["kernel"].T)
    s = np.linalg.svd(np.asarray(W), compute_uv=False)
    edge = 2.0
    out = np.asarray(cyclic.sv_sparsify_matrix(W, edge, rho=0.5))
    u, s2, vt = np.linalg.svd(out)
    # spikes untouched; bulk vectors lose entries so the bulk spectrum shifts only mildly
    np.testing.assert_allclose(s2[:2], s[:2], rtol=1e-3)
    assert not np.allclose(out, np.asarray(W), atol=1e-6)
    # with rho -> 0 nothing is zeroed
    np.testing.assert_allclose(np.asarray(cyclic.sv_sparsify_matrix(W, edge, 0.0)), W, atol=1e-4)
    h = np.asarray(cyclic.sv_sparsify_haar(W, edge, 2.0))
    np.testing.assert_allclose(np.linalg.svd(h, compute_uv=False)[:2], s[:2], rtol=1e-3)
    assert cyclic.haar_z_eff({"a": 2.0, "b": 4.0}) == {"a": pytest.approx(1 / 3),
                                                     "b": pytest.approx(2 / 3)}
    assert jax.jit(cyclic.sv_sparsify_matrix)(W, edge, 0.5).shape == W.shape


def test_cycles_prune_monotonically_and_keep_structure(rng):
    params = spiked_tree(rng)
    out, masks, hist = cyclic.cyclic_prune(params, cycles=4, reg_kwargs=dict(
        steps=5, lr=1e-3, l1=1e-3, l2=1e-3, group=1e-3))
    assert jax.tree.structure(out) == jax.tree.structure(params)
    assert [h.cycle for h in hist] == [1, 2, 3, 4]
    for p in tree.select(params):
        sp = [h.sparsity[p] for h in hist]
        assert all(b > a for a, b in zip(sp, sp[1:], strict=False)) and 0 < sp[0] < sp[-1] < 0.5
        m = np.asarray(tree.flatten(masks)[p])
        assert m.dtype == np.bool_ and np.all(np.asarray(tree.flatten(out)[p])[~m] == 0)
    # data-free regularisation lowers its own loss
    assert hist[0].reg_losses[-1] < hist[0].reg_losses[0]
    # spikes survive: top singular value of each layer is kept within 15%
    for p, v in tree.select(params).items():
        s0 = np.linalg.svd(np.asarray(tree.to_matrix(tree.flatten(params)[p], v)), compute_uv=False)
        s1 = np.linalg.svd(np.asarray(tree.to_matrix(tree.flatten(out)[p], v)), compute_uv=False)
        assert abs(s1[0] - s0[0]) < 0.15 * s0[0]
    with pytest.raises(ValueError, match="rho"):
        cyclic.sv_sparsify(params, {"Dense_0/kernel": 2.0})
    with pytest.raises(ValueError, match="rule='svd'; expected 'cycle' or 'haar'"):
        cyclic.sv_sparsify(params, {"Dense_0/kernel": 2.0}, rho=0.1, rule="svd")


def test_target_sparsity_stops_the_cycles_and_tops_up_exactly(rng):
    params = spiked_tree(rng)
    views = tree.select(params)
    total = sum(v.d_out * v.d_in for v in views.values())
    reg = dict(steps=2)
    _, _, free = cyclic.cyclic_prune(params, cycles=3, reg_kwargs=reg)
    reached = free[1].sparsity  # per-layer sparsity after two cycles
    target = float(np.mean(list(reached.values()))) + 1e-3  # just past two cycles
    out, masks, hist = cyclic.cyclic_prune(params, cycles=3, sparsity=target, reg_kwargs=reg)
    assert [h.cycle for h in hist] == [1, 2]  # the third cycle would pass the target
    flat = tree.flatten(masks)
    removed = sum(m.size - int(np.sum(m)) for m in flat.values())
    assert removed == int(np.floor(target * total + 0.5))
    two = tree.flatten(cyclic.cyclic_prune(params, cycles=2, reg_kwargs=reg)[1])
    for p, m in flat.items():
        assert np.all(np.asarray(tree.flatten(out)[p])[~np.asarray(m)] == 0)
        assert not np.any(np.asarray(m) & ~np.asarray(two[p]))  # cycle removals stay removed
    # a target below the first cycle is plain global magnitude
    _, m0, h0 = cyclic.cyclic_prune(params, cycles=3, sparsity=0.001, reg_kwargs=reg)
    assert h0 == [] and sum(m.size - int(np.sum(m)) for m in tree.flatten(m0).values()) == 8
