"""Tests for mpjax.models.vit: parameter layout, presets, forward, layer-input capture."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from vit_files import CFG

from mpjax import tree
from mpjax.models import vit


def _params(key):
    p = vit.init_params(CFG, key)
    # non-trivial LayerNorm / bias / cls values so every leaf matters
    leaves, treedef = jax.tree.flatten(p)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        treedef,
        [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)],
    )


def test_parameter_layout(key):
    p = vit.init_params(CFG, key)
    shapes = {k: tuple(v.shape) for k, v in tree.flatten(p).items()}
    blk = "Transformer/encoderblock_1/"
    att = blk + "MultiHeadDotProductAttention_0/"
    want = {
        "embedding/kernel": (4, 4, 3, 32),
        "embedding/bias": (32,),
        "cls": (1, 1, 32),
        "Transformer/posembed_input/pos_embedding": (1, 17, 32),
        blk + "LayerNorm_0/scale": (32,),
        att + "query/kernel": (32, 4, 8),
        att + "key/bias": (4, 8),
        att + "out/kernel": (4, 8, 32),
        att + "out/bias": (32,),
        blk + "LayerNorm_1/bias": (32,),
        blk + "MlpBlock_0/Dense_0/kernel": (32, 64),
        blk + "MlpBlock_0/Dense_1/kernel": (64, 32),
        "Transformer/encoder_norm/scale": (32,),
        "head/kernel": (32, 5),
    }
    for path, shape in want.items():
        assert shapes[path] == shape, path
    assert len(shapes) == 8 + 2 * 16  # embedding 2, cls, pos, encoder_norm 2, head 2; 16 per block


@pytest.mark.parametrize(
    "name,n_params,tokens",
    [("ti16", 5_717_416, 197), ("b16", 86_567_656, 197), ("l16", 304_326_632, 197)],
)
def test_presets_match_published_sizes(name, n_params, tokens):
    cfg = vit.config_for(name)
    abstract = vit.abstract_params(cfg)
    assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract)) == n_params
    assert cfg.num_tokens == tokens


@pytest.mark.parametrize("name", ["ti16", "b16", "fmnist", "vit-fmnist-wide"])
def test_abstract_params_equal_a_full_trace(name):
    """One traced block stands for every block: same paths, order, shapes and dtypes."""
    cfg = vit.config_for(name)
    full = jax.eval_shape(lambda k: vit.init_params(cfg, k), jax.random.key(0))
    fast = vit.abstract_params(cfg)
    assert jax.tree.structure(fast) == jax.tree.structure(full)
    assert list(tree.flatten(fast)) == list(tree.flatten(full))
    same = jax.tree.map(lambda a, b: (a.shape, a.dtype) == (b.shape, b.dtype), fast, full)
    assert all(jax.tree.leaves(same))
    blocks = fast["Transformer"]
    assert blocks["encoderblock_0"] is not blocks[f"encoderblock_{cfg.num_layers - 1}"]


def test_fmnist_preset_and_errors():
    cfg = vit.config_for("fmnist")
    assert (cfg.image_size, cfg.channels, cfg.num_classes) == (28, 1, 10)
    assert vit.config_for("vit-s16").hidden_size == 384
    with pytest.raises(ValueError, match="unknown ViT config"):
        vit.config_for("h14")
    with pytest.raises(ValueError, match="num_heads"):
        vit.ViTConfig(hidden_size=30, num_heads=4)


def test_configs_are_built_from_the_arch_table():
    from mpjax import arch

    assert vit.ViTConfig() == vit.config_for("b16") == vit.ViTConfig.from_dims(arch.ViTDims())
    cfg = vit.ViTConfig.from_dims(arch.PRESETS["vit-l16"], dtype="bfloat16", layernorm_eps=1e-12)
    assert (cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.mlp_dim) == (1024, 24, 16, 4096)
    assert cfg.dtype == "bfloat16" and cfg.dims == arch.PRESETS["vit-l16"]
    with pytest.raises(
        ValueError, match=r"expected one of \['b16', 'fmnist', 'fmnist-wide', 'l16', 's16', 'ti16'\]"
    ):
        vit.config_for("vit-h14")


def test_forward_jit_grad_and_input_checks(key):
    p = _params(key)
    model = vit.ViT(CFG)
    x = jax.random.normal(key, (3, 16, 16, 3))
    logits = model.apply({"params": p}, x)
    assert logits.shape == (3, 5) and logits.dtype == jnp.float32
    apply = jax.jit(model.apply)
    np.testing.assert_allclose(apply({"params": p}, x), logits, rtol=1e-5, atol=1e-5)
    # each example is processed independently
    np.testing.assert_allclose(apply({"params": p}, x[1:2]), logits[1:2], rtol=1e-5, atol=1e-5)
    g = jax.jit(jax.grad(lambda q: model.apply({"params": q}, x).sum()))(p)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(g))
    assert float(jnp.abs(g["cls"]).sum()) > 0  # the class token feeds the head
    with pytest.raises(ValueError, match="images"):
        model.apply({"params": p}, jnp.ones((1, 16, 16, 1)))
    bf16 = jax.jit(vit.ViT(CFG.replace(dtype="bfloat16")).apply)({"params": p}, x)
    # bf16 rounding moves these O(1) logits by ~0.013; a real defect moves them by ~std 0.8
    np.testing.assert_allclose(bf16, logits, atol=0.05)


def test_grayscale_input_without_channel_axis(key):
    cfg = CFG.replace(channels=1)
    p = vit.init_params(cfg, key)
    x = jax.random.normal(key, (2, 16, 16))
    apply = jax.jit(vit.ViT(cfg).apply)
    np.testing.assert_array_equal(apply({"params": p}, x), apply({"params": p}, x[..., None]))


def _layer_norm(x, scale, bias, eps=1e-6):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * scale + bias


def test_layer_inputs_follow_matrix_views(key):
    p = _params(key)
    x = jax.random.normal(key, (2, 16, 16, 3))
    logits, inputs = vit.layer_inputs(CFG, p, x)
    np.testing.assert_allclose(logits, vit.ViT(CFG).apply({"params": p}, x), rtol=1e-5, atol=1e-6)
    views = tree.select(p)
    assert set(inputs) == set(views)
    for path, v in views.items():
        assert inputs[path].shape[1] == v.d_in, path
    mats, flat = tree.matrices(p, views), tree.flatten(p)
    # patch embedding: patches @ W.T + b, then [cls; .] + pos, then LayerNorm_0 = query input
    emb = inputs["embedding/kernel"] @ mats["embedding/kernel"].T + flat["embedding/bias"]
    tok = np.concatenate([np.broadcast_to(flat["cls"], (2, 1, 32)), emb.reshape(2, 16, 32)], 1)
    tok = tok + flat["Transformer/posembed_input/pos_embedding"]
    ln = "Transformer/encoderblock_0/LayerNorm_0/"
    want = _layer_norm(tok, flat[ln + "scale"], flat[ln + "bias"]).reshape(-1, 32)
    q = "Transformer/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel"
    np.testing.assert_allclose(inputs[q], want, rtol=1e-4, atol=1e-4)
    # MLP: Dense_1's input is gelu(Dense_0 of Dense_0's input)
    mlp = "Transformer/encoderblock_1/MlpBlock_0/"
    h = inputs[mlp + "Dense_0/kernel"] @ mats[mlp + "Dense_0/kernel"].T + flat[mlp + "Dense_0/bias"]
    np.testing.assert_allclose(
        inputs[mlp + "Dense_1/kernel"], jax.nn.gelu(h, approximate=False), rtol=1e-4, atol=1e-5
    )
    # head input is the normalised class token: head @ W.T + b gives the logits
    out = inputs["head/kernel"] @ mats["head/kernel"].T + flat["head/bias"]
    np.testing.assert_allclose(out, logits, rtol=1e-4, atol=1e-5)


def test_no_intermediates_without_capture(key):
    p = vit.init_params(CFG, key)
    _, state = vit.ViT(CFG).apply(
        {"params": p}, jnp.ones((1, 16, 16, 3)), mutable=["intermediates"]
    )
    assert not state.get("intermediates")
