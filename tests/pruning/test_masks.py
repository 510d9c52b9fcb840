"""Masks: exact counts, N:M builders vs the independent validator, apply/summary, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import tree
from mpjax.pruning import masks

PATTERNS = [(1, 4), (2, 4), (3, 4), (4, 8), (6, 12), (8, 16), (12, 16)]


def dense_tree(rng, d_in=48, d_out=24):
    return {
        "Dense_0": {"kernel": jnp.asarray(rng.normal(size=(d_in, d_out)), jnp.float32),
                    "bias": jnp.zeros(d_out)},
        "attn": {"value": {"kernel": jnp.asarray(rng.normal(size=(d_in, 2, 8)), jnp.float32)}},
    }


@pytest.mark.parametrize("s", [0.0, 0.1, 0.25, 0.5, 0.77, 0.99])
def test_topk_exact_count_with_ties(s):
    score = jnp.asarray(np.repeat(np.arange(10.0), 10))  # many ties
    m = masks.topk_mask(score, s)
    assert int((~m).sum()) == int(np.floor(s * 100 + 0.5))
    # ties: within the boundary score, lower indices go first
    removed = np.flatnonzero(~np.asarray(m))
    if removed.size:
        assert np.array_equal(removed, np.arange(removed.size))


def test_remove_lowest_matches_stable_sort_oracle(rng):
    f = jax.jit(masks.remove_lowest)
    values = np.array([-np.inf, -2.0, -1.0, -0.0, 0.0, 0.5, 1.0, 3.0, np.inf], np.float32)
    size = 48  # one shape, so one compilation; the count is a traced argument
    for trial in range(40):
        x = (rng.choice(values, size) if trial % 2 else rng.normal(size=size)).astype(np.float32)
        count = int(rng.integers(0, size + 1))
        order = np.argsort(x + np.float32(0), kind="stable")  # +0 maps -0.0 to 0.0
        expect = np.ones(size, bool)
        expect[order[:count]] = False
        np.testing.assert_array_equal(np.asarray(f(jnp.asarray(x), count)), expect)


def test_global_vs_layer_scope(rng):
    p = dense_tree(rng)
    p["Dense_0"]["kernel"] = p["Dense_0"]["kernel"] * 10  # much larger layer
    g = masks.magnitude_masks(p, 0.5, scope="global")
    lay = masks.magnitude_masks(p, 0.5, scope="layer")
    fg, fl = tree.flatten(g), tree.flatten(lay)
    total = sum(m.size for m in fg.values())
    assert total - sum(int(m.sum()) for m in fg.values()) == total // 2
    assert float(fg["attn/value/kernel"].mean()) < 0.1  # small layer pruned hardest
    for m in fl.values():
        assert int((~m).sum()) == m.size // 2


@pytest.mark.parametrize(("k", "n"), PATTERNS)
def test_nm_masks_valid_and_keep_top_k(rng, k, n):
    p = dense_tree(rng)
    m = masks.nm_masks(p, k, n)
    assert masks.validate_nm(m, k, n) == {}
    W = np.abs(np.asarray(p["Dense_0"]["kernel"]).T).reshape(24, -1, n)
    M = np.asarray(m["Dense_0"]["kernel"]).T.reshape(24, -1, n)
    kth = -np.sort(-W, axis=-1)[..., k - 1 : k]
    assert np.all(W[M] >= np.broadcast_to(kth, W.shape)[M])
    assert m["Dense_0"]["bias"] is None


def test_validator_is_independent_and_catches_errors(rng):
    p = dense_tree(rng)
    m = masks.nm_masks(p, 2, 4)
    bad = np.asarray(m["Dense_0"]["kernel"]).copy()
    bad[5, 3] = ~bad[5, 3]  # leaf (in, out): input 5 of output 3 -> group 1
    m2 = jax.tree.map(lambda x: x, m, is_leaf=lambda x: x is None)
    m2["Dense_0"]["kernel"] = bad
    probs = masks.validate_nm(m2, 2, 4, raise_on_error=False)
    assert list(probs) == ["Dense_0/kernel"] and "row 3, group 1" in probs["Dense_0/kernel"]
    with pytest.raises(ValueError, match="Dense_0/kernel"):
        masks.validate_nm(m2, 2, 4)
    m2["Dense_0"]["kernel"] = np.asarray(m["Dense_0"]["kernel"], np.float32)
    assert "dtype" in masks.validate_nm(m2, 2, 4, raise_on_error=False)["Dense_0/kernel"]
    # groups run along d_in: the transposed layout is not a valid 2:4 mask
    t = {"Dense_0": {"kernel": np.asarray(m["Dense_0"]["kernel"]).T.reshape(48, 24)}}
    assert masks.validate_nm(t, 2, 4, raise_on_error=False)


def test_indivisible_error_or_skip(rng):
    p = {"Dense_0": {"kernel": jnp.ones((10, 8))}, "Dense_1": {"kernel": jnp.ones((8, 4))}}
    with pytest.raises(ValueError, match="Dense_0/kernel.*d_in=10"):
        masks.nm_masks(p, 2, 4)
    with pytest.warns(UserWarning, match="skipped"):
        m = masks.nm_masks(p, 2, 4, on_indivisible="skip")
    assert m["Dense_0"]["kernel"] is None and m["Dense_1"]["kernel"] is not None
    with pytest.raises(ValueError, match="on_indivisible"):
        masks.nm_masks(p, 2, 4, on_indivisible="pad")


@pytest.mark.parametrize("s", [-0.1, 1.0, 1.5])
def test_sparsity_out_of_range(rng, s):
    with pytest.raises(ValueError, match="sparsity"):
        masks.magnitude_masks(dense_tree(rng), s)


def test_apply_masks_and_mismatch_errors(rng):
    p = dense_tree(rng)
    m = masks.magnitude_masks(p, 0.5)
    out = masks.apply_masks(p, m)
    assert jax.tree.structure(out) == jax.tree.structure(p)
    k = np.asarray(out["Dense_0"]["kernel"])
    assert np.all(k[~np.asarray(m["Dense_0"]["kernel"])] == 0)
    assert out["Dense_0"]["bias"] is p["Dense_0"]["bias"]
    missing = {"Dense_0": m["Dense_0"]}
    with pytest.raises(ValueError, match="attn/value/kernel"):
        masks.apply_masks(p, missing)
    wrong = jax.tree.map(lambda x: x, m, is_leaf=lambda x: x is None)
    wrong["Dense_0"]["kernel"] = wrong["Dense_0"]["kernel"].T
    with pytest.raises(ValueError, match="Dense_0/kernel: mask shape"):
        masks.apply_masks(p, wrong)
    renamed = {"Dense_9": m["Dense_0"], "attn": m["attn"]}
    with pytest.raises(ValueError, match="first mismatch at path 'Dense_0/bias'"):
        masks.apply_masks(p, renamed)


def test_summary_counts_macs(rng):
    p = dense_tree(rng)
    m = masks.nm_masks(p, 2, 4)
    s = masks.summary(p, m, tokens=10)
    rows = {r["path"]: r for r in s["layers"]}
    assert rows["Dense_0/kernel"]["pattern"] == "2:4"
    assert rows["Dense_0/kernel"]["dense_macs"] == 10 * 48 * 24
    assert rows["Dense_0/kernel"]["macs"] == pytest.approx(0.5 * 10 * 48 * 24)
    assert s["sparsity"] == pytest.approx(0.5)
    dense = masks.summary(p, None)
    assert dense["sparsity"] == 0.0 and dense["macs"] == dense["dense_macs"] == 48 * 24 + 48 * 16
    assert "global sparsity" in masks.format_summary(s)
