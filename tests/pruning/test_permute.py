"""Input-channel permutations: the dense function is unchanged, N:M keeps more weight."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import tree
from mpjax.pruning import masks, nm, permute


class MlpBlock(nn.Module):
    hidden: int = 32
    out: int = 16

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.out, name="Dense_1")(nn.gelu(nn.Dense(self.hidden, name="Dense_0")(x)))


class Block(nn.Module):
    """A tiny pre-LN transformer block with big_vision-style names."""

    @nn.compact
    def __call__(self, x):
        y = nn.LayerNorm(name="LayerNorm_0")(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=2, name="MultiHeadDotProductAttention_0")(y, y)
        return x + MlpBlock(name="MlpBlock_0")(nn.LayerNorm(name="LayerNorm_1")(x))


def test_interleave_one_column_per_bucket(rng):
    scores = rng.normal(size=32)
    perm = permute.interleave(scores, 4)
    assert sorted(perm.tolist()) == list(range(32))
    rank = np.empty(32, int)
    rank[np.argsort(-scores, kind="stable")] = np.arange(32)
    buckets = rank[perm].reshape(8, 4) // 8
    assert np.all(np.sort(buckets, axis=1) == np.arange(4))


def test_permuted_block_same_logits(rng):
    model = Block()
    x = jnp.asarray(rng.normal(size=(2, 5, 16)), jnp.float32)
    params = model.init(jax.random.key(0), x)["params"]
    calib = {"MlpBlock_0/Dense_1/kernel": rng.normal(size=(64, 32))}
    new, perms = permute.permute_vit(params, 4, calib_inputs=calib)
    assert set(perms) == {"MlpBlock_0/Dense_1/kernel", "MultiHeadDotProductAttention_0/out/kernel"}
    assert jax.tree.structure(new) == jax.tree.structure(params)
    for p in perms:
        assert not np.array_equal(perms[p], np.arange(perms[p].size))
    # heads stay intact: attention perm maps each head's block to itself
    pa = perms["MultiHeadDotProductAttention_0/out/kernel"]
    assert np.all(pa // 8 == np.arange(16) // 8)
    y0 = model.apply({"params": params}, x)
    y1 = model.apply({"params": new}, x)
    assert float(jnp.max(jnp.abs(y0 - y1))) <= 1e-5


def test_permutation_helps_nm_on_clustered_columns(rng):
    """Strong inputs clustered in one group: 2:4 drops half of them unless permuted."""
    model = MlpBlock(hidden=16, out=8)
    params = model.init(jax.random.key(1), jnp.ones((1, 8)))["params"]
    k = np.asarray(params["Dense_1"]["kernel"]) * 0.01
    k[:4] *= 100.0  # inputs 0-3 of Dense_1 are strong
    params["Dense_1"]["kernel"] = jnp.asarray(k)
    cons = "Dense_1/kernel"

    def kept_mass(p):
        m = nm.nm_masks(p, 2, 4)
        return float(jnp.sum(jnp.abs(masks.apply_masks(p, m)["Dense_1"]["kernel"])))

    perm = permute.nm_permutation(tree.matrices(params)[cons], 4)
    new = permute.permute_pair(params, "Dense_0/kernel", cons, perm)
    assert kept_mass(new) > 1.25 * kept_mass(params)  # top-2 of 4 keeps ~70%
    x = jnp.asarray(rng.normal(size=(3, 8)), jnp.float32)
    assert float(jnp.max(jnp.abs(model.apply({"params": params}, x)
                                 - model.apply({"params": new}, x)))) <= 1e-5


def test_permute_pair_errors(rng):
    params = MlpBlock().init(jax.random.key(0), jnp.ones((1, 8)))["params"]
    with pytest.raises(ValueError, match="Dense_1/kernel: perm must be a permutation"):
        permute.permute_pair(params, "Dense_0/kernel", "Dense_1/kernel", np.arange(31))
    with pytest.raises(ValueError, match="Dense_9/kernel: not a weight matrix"):
        permute.permute_pair(params, "Dense_9/kernel", "Dense_1/kernel", np.arange(32))
