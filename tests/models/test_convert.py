"""mpjax.models.convert: timm / Hugging Face layouts against a torch reference, bad tensors."""

import numpy as np
import pytest
from vit_files import CFG, logits

from mpjax import npz, tree
from mpjax.models import convert, sources


def _torch_vit(sd, cfg, images):
    """Reference forward with timm VisionTransformer semantics, in plain torch."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    t = {k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()}
    d, h = cfg.hidden_size, cfg.num_heads
    x = torch.from_numpy(images.transpose(0, 3, 1, 2))
    x = F.conv2d(x, t["patch_embed.proj.weight"], t["patch_embed.proj.bias"], stride=cfg.patch_size)
    x = x.flatten(2).transpose(1, 2)
    b, n = x.shape[0], x.shape[1] + 1
    x = torch.cat([t["cls_token"].expand(b, -1, -1), x], dim=1) + t["pos_embed"]

    def ln(y, name):
        return F.layer_norm(y, (d,), t[name + ".weight"], t[name + ".bias"], eps=1e-6)

    def lin(y, name):
        return F.linear(y, t[name + ".weight"], t[name + ".bias"])

    for i in range(cfg.num_layers):
        pre = f"blocks.{i}."
        qkv = lin(ln(x, pre + "norm1"), pre + "attn.qkv").reshape(b, n, 3, h, d // h)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-2, -1) * (d // h) ** -0.5, dim=-1) @ v
        x = x + lin(att.transpose(1, 2).reshape(b, n, d), pre + "attn.proj")
        x = x + lin(F.gelu(lin(ln(x, pre + "norm2"), pre + "mlp.fc1")), pre + "mlp.fc2")
    return lin(ln(x, "norm")[:, 0], "head").numpy()


def test_timm_layout_matches_torch_reference(params, images, tmp_path):
    from safetensors.numpy import save_file

    sd = convert.flax_to_timm(params, CFG)
    assert sd["blocks.0.attn.qkv.weight"].shape == (96, 32)
    assert sd["patch_embed.proj.weight"].shape == (32, 3, 4, 4)
    save_file(sd, tmp_path / "model.safetensors")
    loaded = sources.load_vit_checkpoint(tmp_path / "model.safetensors", CFG)
    ours = logits(loaded, images)
    np.testing.assert_array_equal(ours, logits(params, images))  # exact: transposes only
    np.testing.assert_allclose(ours, _torch_vit(sd, CFG, images), atol=1e-4, rtol=1e-4)
    assert len(tree.select(sd)) == 4 * CFG.num_layers + 2  # qkv, proj, fc1, fc2, patch, head


def test_hf_round_trip(params, images, tmp_path):
    from safetensors.numpy import save_file

    sd = convert.flax_to_hf(params, CFG)
    assert "vit.encoder.layer.1.attention.attention.query.weight" in sd
    assert sd["classifier.weight"].shape == (5, 32)
    save_file(sd, tmp_path / "hf.safetensors")
    assert convert.detect_layout(sd) == "hf"
    loaded = sources.load_vit_checkpoint(tmp_path / "hf.safetensors", CFG)
    np.testing.assert_array_equal(logits(loaded, images), logits(params, images))
    # hf and timm agree through the torch reference
    via_timm = convert.flax_to_timm(convert.hf_to_flax(sd, CFG), CFG)
    np.testing.assert_allclose(
        _torch_vit(via_timm, CFG, images), logits(params, images), atol=1e-4, rtol=1e-4
    )


def test_missing_and_misshaped_tensors_are_named(params):
    sd = convert.flax_to_timm(params, CFG)
    bad = dict(sd)
    del bad["blocks.1.mlp.fc1.bias"]
    with pytest.raises(ValueError, match=r"blocks\.1\.mlp\.fc1\.bias: missing"):
        convert.timm_to_flax(bad, CFG)
    bad = dict(sd, **{"blocks.0.attn.proj.weight": np.zeros((32, 31), np.float32)})
    with pytest.raises(ValueError, match=r"blocks\.0\.attn\.proj\.weight: shape \(32, 31\)"):
        convert.timm_to_flax(bad, CFG)
    with pytest.raises(ValueError, match=r"blocks\.0\.attn\.qkv\.weight: missing"):
        convert.timm_to_flax({k: v for k, v in sd.items() if "qkv.weight" not in k}, CFG)
    with pytest.raises(ValueError, match="fc_norm.weight: unexpected"):
        convert.timm_to_flax(dict(sd, **{"fc_norm.weight": np.ones(32)}), CFG)
    convert.timm_to_flax(dict(sd, **{"fc_norm.weight": np.ones(32)}), CFG, strict=False)
    hf = convert.flax_to_hf(params, CFG)
    del hf["vit.encoder.layer.0.layernorm_after.weight"]
    with pytest.raises(ValueError, match=r"layer\.0\.layernorm_after\.weight: missing"):
        convert.hf_to_flax(hf, CFG)
    flat = dict(tree.flatten(params))
    flat["Transformer/encoderblock_1/MlpBlock_0/Dense_1/kernel"] = np.zeros((64, 33))
    with pytest.raises(ValueError, match=r"encoderblock_1/MlpBlock_0/Dense_1/kernel: shape"):
        convert.validate_params(npz.unflatten_dict(flat), CFG)
    flat = dict(tree.flatten(params))
    del flat["head/bias"]
    with pytest.raises(ValueError, match="head/bias: missing"):
        convert.validate_params(npz.unflatten_dict(flat), CFG)


def test_old_vit_jax_names_are_fixed(params):
    flat = {}
    for k, v in tree.flatten(params).items():
        k = k.replace("MultiHeadDotProductAttention_0", "MultiHeadDotProductAttention_1")
        k = k.replace("LayerNorm_1", "LayerNorm_2").replace("MlpBlock_0", "MlpBlock_3")
        flat["opt/target/" + k] = v
    fixed, notes = convert.fix_vit_names(flat)
    assert fixed.keys() == tree.flatten(params).keys()
    assert "opt/target/cls -> cls" in notes and len(notes) == len(flat)
    assert convert.fix_vit_names(tree.flatten(params))[1] == []  # current names: nothing to do


def test_infer_config(params):
    assert convert.infer_config(params) == CFG
    assert convert.infer_config(params, layernorm_eps=1e-12).layernorm_eps == 1e-12
    with pytest.raises(ValueError, match="embedding/kernel: missing"):
        convert.infer_config({"head": params["head"]})
