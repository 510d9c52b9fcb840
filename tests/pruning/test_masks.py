"""Masks: exact counts with ties, global vs layer scope, apply/check/summary, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import tree
from mpjax.pruning import masks, nm


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
    m = nm.nm_masks(p, 2, 4)
    s = masks.summary(p, m, tokens=10)
    rows = {r["path"]: r for r in s["layers"]}
    assert rows["Dense_0/kernel"]["pattern"] == "2:4"
    assert rows["Dense_0/kernel"]["dense_macs"] == 10 * 48 * 24
    assert rows["Dense_0/kernel"]["macs"] == pytest.approx(0.5 * 10 * 48 * 24)
    assert s["sparsity"] == pytest.approx(0.5)
    dense = masks.summary(p, None)
    assert dense["sparsity"] == 0.0 and dense["macs"] == dense["dense_macs"] == 48 * 24 + 48 * 16
    assert "global sparsity" in masks.format_summary(s)


def test_rounding_is_to_nearest_ties_down_and_never_removes_a_whole_layer():
    # 0.5 of 1 and of 9 are ties: rounded down (the old rule rounded up: 1 of 1, 5 of 9)
    assert [int(masks.n_remove(0.5, n)) for n in (1, 2, 3, 9, 10)] == [0, 1, 1, 4, 5]
    assert int(masks.n_remove(0.26, 100)) == 26 and int(masks.n_remove(0.264, 100)) == 26
    # a sparsity below 1 that would round to every entry keeps one
    assert int(masks.n_remove(0.99, 10)) == 9 and int(masks.n_remove(0.8, 1)) == 0
    tiny = {"a": {"kernel": jnp.ones((1, 1))}, "b": {"kernel": jnp.arange(1.0, 10.0).reshape(3, 3)}}
    for scope in ("layer", "global"):
        m = tree.flatten(masks.magnitude_masks(tiny, 0.5, scope=scope))
        assert bool(m["a/kernel"].all()), scope  # the 1x1 layer is not zeroed
    lay = tree.flatten(masks.magnitude_masks(tiny, 0.5, scope="layer"))
    assert float(1 - lay["b/kernel"].mean()) == pytest.approx(4 / 9)  # not 5/9 = 0.556


def test_global_scope_keeps_one_weight_in_every_layer():
    p = {"small": {"kernel": jnp.full((2, 2), 1e-3)},
         "big": {"kernel": jnp.arange(1.0, 17.0).reshape(4, 4)}}  # fmt: skip
    m = tree.flatten(masks.magnitude_masks(p, 0.3, scope="global"))
    # 6 of 20 removed exactly; without the guard all 4 small weights would go
    assert int(sum((~np.asarray(x)).sum() for x in m.values())) == 6
    assert np.asarray(m["small/kernel"]).tolist() == [[False, False], [False, True]]
    assert int((~np.asarray(m["big/kernel"])).sum()) == 3
    # where no layer would be emptied the guard changes nothing
    q = {"a": {"kernel": jnp.arange(1.0, 5.0).reshape(2, 2)},
         "b": {"kernel": jnp.arange(1.5, 5.5).reshape(2, 2)}}  # fmt: skip
    g = tree.flatten(masks.magnitude_masks(q, 0.5, scope="global"))
    assert np.asarray(g["a/kernel"]).tolist() == [[False, False], [True, True]]
    assert np.asarray(g["b/kernel"]).tolist() == [[False, False], [True, True]]
