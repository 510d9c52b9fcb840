"""Matrix views: selection rules, (d_out, d_in) orientation, exact inverse."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

from mpjax import tree


def _vit_like(rng):
    return {
        "embedding": {"kernel": rng.normal(size=(4, 4, 3, 8)), "bias": np.zeros(8)},
        "cls": np.zeros((1, 1, 8)),
        "Transformer": {
            "posembed_input": {"pos_embedding": rng.normal(size=(1, 5, 8))},
            "encoderblock_0": {
                "LayerNorm_0": {"scale": np.ones(8), "bias": np.zeros(8)},
                "MultiHeadDotProductAttention_0": {
                    name: {"kernel": rng.normal(size=(8, 2, 4)), "bias": np.zeros((2, 4))}
                    for name in ("query", "key", "value")
                }
                | {"out": {"kernel": rng.normal(size=(2, 4, 8)), "bias": np.zeros(8)}},
                "MlpBlock_0": {
                    "Dense_0": {"kernel": rng.normal(size=(8, 16)), "bias": np.zeros(16)},
                    "Dense_1": {"kernel": rng.normal(size=(16, 8)), "bias": np.zeros(8)},
                },
            },
        },
        "head": {"kernel": rng.normal(size=(8, 10)), "bias": np.zeros(10)},
    }


def test_selects_kernels_only(rng):
    views = tree.select(_vit_like(rng))
    assert all(p.endswith("/kernel") for p in views)
    assert "Transformer/posembed_input/pos_embedding" not in views
    assert len(views) == 8  # patch conv, q, k, v, out, 2 MLP, head
    assert views["embedding/kernel"].shape == (8, 48)
    assert views["Transformer/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel"].shape == (8, 8)
    assert views["Transformer/encoderblock_0/MultiHeadDotProductAttention_0/out/kernel"].kind == "attn_out"
    assert views["Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel"].shape == (16, 8)


def test_views_match_layer_semantics(rng):
    """W @ x equals what the layer computes for Dense, DenseGeneral and Conv kernels."""
    params = _vit_like(rng)
    views = tree.select(params)
    mats = tree.matrices(params, views)
    x = rng.normal(size=8)
    dense = params["Transformer"]["encoderblock_0"]["MlpBlock_0"]["Dense_0"]["kernel"]
    np.testing.assert_allclose(mats["Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel"] @ x, x @ dense)
    q = params["Transformer"]["encoderblock_0"]["MultiHeadDotProductAttention_0"]["query"]["kernel"]
    np.testing.assert_allclose(
        mats["Transformer/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel"] @ x,
        np.einsum("d,dhk->hk", x, q).reshape(-1),
    )
    out = params["Transformer"]["encoderblock_0"]["MultiHeadDotProductAttention_0"]["out"]["kernel"]
    h = rng.normal(size=(2, 4))
    np.testing.assert_allclose(
        mats["Transformer/encoderblock_0/MultiHeadDotProductAttention_0/out/kernel"] @ h.reshape(-1),
        np.einsum("hk,hkd->d", h, out),
    )
    conv = params["embedding"]["kernel"]
    patch = rng.normal(size=(4, 4, 3))
    np.testing.assert_allclose(
        mats["embedding/kernel"] @ patch.reshape(-1), np.einsum("ijc,ijco->o", patch, conv)
    )


def test_roundtrip_is_exact(rng):
    params = _vit_like(rng)
    views = tree.select(params)
    back = tree.replace_matrices(params, tree.matrices(params, views), views)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back), strict=True):
        assert np.array_equal(a, b)


def test_torch_layout_and_embeddings_left_out(rng):
    flat = {
        "blocks.0.mlp.fc1.weight": rng.normal(size=(16, 8)),
        "blocks.0.mlp.fc1.bias": np.zeros(16),
        "patch_embed.proj.weight": rng.normal(size=(8, 3, 4, 4)),
        "embeddings.word_embeddings.weight": rng.normal(size=(100, 8)),
        "norm.weight": np.ones(8),
    }
    views = tree.select(flat)
    assert set(views) == {"blocks.0.mlp.fc1.weight", "patch_embed.proj.weight"}
    assert views["blocks.0.mlp.fc1.weight"].shape == (16, 8)
    assert views["patch_embed.proj.weight"].shape == (8, 48)


def test_linen_and_nnx_paths():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(3)(nn.relu(nn.Dense(5)(x)))

    params = Net().init(jax.random.key(0), jnp.ones((1, 4)))["params"]
    assert list(tree.select(params)) == ["Dense_0/kernel", "Dense_1/kernel"]

    class NNXNet(nnx.Module):
        def __init__(self, rngs):
            self.fc = nnx.Linear(4, 5, rngs=rngs)

    state = nnx.state(NNXNet(nnx.Rngs(0)), nnx.Param)
    views = tree.select(state)
    assert list(views) == ["fc/kernel"] and views["fc/kernel"].shape == (5, 4)
    back = tree.replace_matrices(state, tree.matrices(state, views), views)
    assert np.array_equal(back["fc"]["kernel"].value, state["fc"]["kernel"].value)


def test_include_exclude_globs(rng):
    params = _vit_like(rng)
    mlp = tree.select(params, include="*MlpBlock*")
    assert len(mlp) == 2
    rest = tree.select(params, exclude=["*MlpBlock*", "head/*"])
    assert len(rest) == 5


def test_bad_input_names_the_path(rng):
    params = _vit_like(rng)
    params["head"]["kernel"][0, 0] = np.nan
    with pytest.raises(ValueError, match="head/kernel"):
        tree.check_finite(params)
    with pytest.raises(ValueError, match="not a weight matrix"):
        tree.view_of("head/bias", (10,))
    view = tree.view_of("a/kernel", (3, 4))
    with pytest.raises(ValueError, match="a/kernel"):
        tree.from_matrix(np.zeros((3, 4)), view)


def test_linen_conv1d_kernel_is_a_convolution(rng):
    """A 3-D kernel under a ``Conv*`` module is (width, in, out): view (out, width*in)."""

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Conv(32, kernel_size=(3,), padding="VALID")(x)

    x = jnp.asarray(rng.normal(size=(1, 3, 16)), jnp.float32)  # one output position
    params = Net().init(jax.random.key(0), x)["params"]
    view = tree.select(params)["Conv_0/kernel"]
    assert (view.kind, view.shape) == ("conv", (32, 48))
    w = tree.matrices(params, {"Conv_0/kernel": view})["Conv_0/kernel"]
    want = Net().apply({"params": params}, x)[0, 0] - params["Conv_0"]["bias"]
    np.testing.assert_allclose(w @ x.reshape(-1), want, rtol=1e-5, atol=1e-5)
    # a DenseGeneral of the same shape stays an attention input; names ignore case
    assert tree.infer_kind("attn/query/kernel", (3, 16, 32)) == "attn_in"
    assert tree.infer_kind("stem/conv1/kernel", (3, 16, 32)) == "conv"
    back = tree.replace_matrices(params, {"Conv_0/kernel": w}, {"Conv_0/kernel": view})
    assert np.array_equal(back["Conv_0"]["kernel"], params["Conv_0"]["kernel"])


def test_torch_conv1d_weight_view(rng):
    """torch ``Conv1d.weight`` (out, in, width) -> (out, in*width), as torch contracts it."""
    weight = rng.normal(size=(32, 16, 3))
    views = tree.select({"conv.weight": weight, "conv.bias": np.zeros(32)})
    assert list(views) == ["conv.weight"] and views["conv.weight"].shape == (32, 48)
    x = rng.normal(size=(16, 3))  # (in, width): one output position
    w = tree.matrices({"conv.weight": weight}, views)["conv.weight"]
    np.testing.assert_allclose(w @ x.reshape(-1), np.einsum("oik,ik->o", weight, x))


def test_complex_weight_is_refused_with_its_path(rng):
    params = _vit_like(rng)
    params["head"]["kernel"] = params["head"]["kernel"] * (1 + 1j)
    with pytest.raises(ValueError, match="head/kernel.*complex"):
        tree.select(params)
    assert "head/kernel" not in tree.select(params, exclude="head/*")  # excluded: no error
