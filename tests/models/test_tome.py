"""Tests for mpjax.models.tome and the ToMe path of the ViT."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import vit_files

from mpjax import tree
from mpjax.models import tome, vit

#: The small ViT of :mod:`vit_files` with three blocks.
CFG = vit_files.CFG.replace(num_layers=3)


def test_model_checks_tome_r_with_the_arch_schedule(key):
    # The token schedule itself is tested in tests/arch/test_tokens.py; the model uses it.
    p = vit.init_params(CFG, key)
    x = jnp.zeros((1, 16, 16, 3))
    with pytest.raises(ValueError, match="tome_r.*one per block"):
        vit.ViT(CFG).apply({"params": p}, x, tome_r=(1, 2))
    with pytest.raises(ValueError, match="tome_r"):
        vit.ViT(CFG).apply({"params": p}, x, tome_r=-1)
    assert vit.token_counts(CFG, 100) == [17, 9, 5, 3]  # clipped at (T - 1) // 2 per block


def test_merge_tokens_conserves_mass_and_protects_class(key):
    k1, k2 = jax.random.split(key)
    x = jax.random.normal(k1, (3, 11, 6))
    size = jnp.asarray(np.random.default_rng(0).integers(1, 4, (3, 11, 1)), jnp.float32)
    metric = jax.random.normal(k2, (3, 11, 5))
    new_x, new_size = tome.merge_tokens(x, size, metric, 4)
    assert new_x.shape == (3, 7, 6) and new_size.shape == (3, 7, 1)
    np.testing.assert_allclose(new_size.sum(1), size.sum(1))
    np.testing.assert_allclose((new_x * new_size).sum(1), (x * size).sum(1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(new_x[:, 0], x[:, 0], rtol=1e-6)  # class token kept, first
    np.testing.assert_array_equal(new_size[:, 0], size[:, 0])


def test_merge_picks_most_similar_pair():
    # 5 tokens: A = {0 (cls), 2, 4}, B = {1, 3}; token 4 has the same key as token 1
    metric = jnp.asarray([[[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [0, 2, 0]]], jnp.float32)
    x = jnp.arange(5, dtype=jnp.float32).reshape(1, 5, 1) * 10
    new_x, size = tome.merge_tokens(x, jnp.ones((1, 5, 1)), metric, 1)
    # unmerged A = [0, 2] in order, then B = [1 merged with 4, 3]
    np.testing.assert_allclose(new_x[0, :, 0], [0, 20, 25, 30])
    np.testing.assert_allclose(size[0, :, 0], [1, 1, 2, 1])


def test_r0_equals_plain_exactly(key):
    p = vit.init_params(CFG, key)
    x = jax.random.normal(key, (2, 16, 16, 3))
    model = vit.ViT(CFG)
    plain = model.apply({"params": p}, x)
    np.testing.assert_array_equal(model.apply({"params": p}, x, tome_r=0), plain)
    np.testing.assert_array_equal(model.apply({"params": p}, x, tome_r=(0, 0, 0)), plain)
    # proportional attention with unit sizes is the plain attention, bit for bit
    att = vit.Attention(num_heads=4)
    h = jax.random.normal(key, (2, 9, 32))
    ap = att.init(key, h)
    a0, k0 = att.apply(ap, h)
    a1, k1 = att.apply(ap, h, jnp.ones((2, 9, 1)))
    np.testing.assert_array_equal(a0, a1)
    np.testing.assert_array_equal(k0, k1)


@pytest.mark.parametrize("r", [3, 100, (2, 0, 5)])
def test_r_positive_token_counts(key, r):
    p = vit.init_params(CFG, key)
    x = jax.random.normal(key, (2, 16, 16, 3))
    sched = vit.token_counts(CFG, r)
    logits, inputs = vit.layer_inputs(CFG, p, x, tome_r=r)
    assert logits.shape == (2, 5) and bool(jnp.all(jnp.isfinite(logits)))
    for i in range(CFG.num_layers):
        blk = f"Transformer/encoderblock_{i}/"
        attn_rows = inputs[blk + "MultiHeadDotProductAttention_0/query/kernel"].shape[0]
        mlp_rows = inputs[blk + "MlpBlock_0/Dense_0/kernel"].shape[0]
        assert attn_rows == 2 * sched[i] and mlp_rows == 2 * sched[i + 1]
    assert sched[-1] < sched[0]
    views = tree.select(p)
    assert set(inputs) == set(views)


def test_tome_jits_with_static_r(key):
    p = vit.init_params(CFG, key)
    x = jax.random.normal(key, (2, 16, 16, 3))
    f = jax.jit(vit.ViT(CFG).apply, static_argnames="tome_r")
    merged = f({"params": p}, x, tome_r=4)
    captured, _ = vit.layer_inputs(CFG, p, x, tome_r=4)  # another program, same function
    np.testing.assert_allclose(merged, captured, rtol=1e-5, atol=1e-5)
    # merging changes the function (by ~0.07 here), far beyond float noise
    assert np.abs(np.asarray(merged - f({"params": p}, x, tome_r=0))).max() > 1e-2
