"""mpjax.models.sources: every kind of source, the SourceInfo it returns, bad files."""

import dataclasses

import jax
import numpy as np
import pytest
from vit_files import CFG, logits

from mpjax import npz, tree
from mpjax.models import LoadedModel, SourceInfo, convert, sources, vit


def test_source_info_fields():
    names = [f.name for f in dataclasses.fields(SourceInfo)]
    assert names == ["kind", "source", "config", "layout", "seed", "masks", "meta", "renamed"]
    info = SourceInfo("random", "vit-ti16", None, "flax", seed=3)
    assert info.to_dict() == dict(kind="random", source="vit-ti16", config=None, layout="flax",
                                  seed=3, masks=None, meta=None, renamed=())  # fmt: skip
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.kind = "npz"


def test_npz_round_trip_and_old_names(params, images, tmp_path):
    npz.write_npz(tmp_path / "bv.npz", tree.flatten(params))
    loaded, info = sources.load_source(tmp_path / "bv.npz")
    assert (info.kind, info.source, info.layout) == ("npz", str(tmp_path / "bv.npz"), "flax")
    assert info.config == CFG and info.renamed == () and info.masks is None
    np.testing.assert_array_equal(logits(loaded, images), logits(params, images))
    np.testing.assert_array_equal(
        logits(sources.load_vit_checkpoint(tmp_path / "bv.npz", CFG), images),
        logits(params, images),
    )
    # vit_jax names (MultiHeadDotProductAttention_1, LayerNorm_2, MlpBlock_3) and prefixes
    old = {}
    for k, v in tree.flatten(params).items():
        k = k.replace("MultiHeadDotProductAttention_0", "MultiHeadDotProductAttention_1")
        k = k.replace("LayerNorm_1", "LayerNorm_2").replace("MlpBlock_0", "MlpBlock_3")
        old["params/" + k] = np.asarray(v)
    np.savez(tmp_path / "old.npz", **old)
    loaded = sources.load_vit_checkpoint(tmp_path / "old.npz", CFG)
    np.testing.assert_array_equal(logits(loaded, images), logits(params, images))
    _, info = sources.load_source(tmp_path / "old.npz")
    assert len(info.renamed) == len(old) and info.config == CFG


def test_big_vision_pos_embedding_without_cls_row(params, images, tmp_path):
    flat = {k: np.asarray(v) for k, v in tree.flatten(params).items()}
    pos = flat.pop("Transformer/posembed_input/pos_embedding")
    flat["pos_embedding"] = pos[:, 1:]  # big_vision adds the table before prepending cls
    np.savez(tmp_path / "bv.npz", **flat)
    loaded, info = sources.load_source(tmp_path / "bv.npz")
    assert any("pos_embedding" in note for note in info.renamed)
    want = dict(tree.flatten(params))
    want["Transformer/posembed_input/pos_embedding"] = np.concatenate(
        [np.zeros_like(pos[:, :1]), pos[:, 1:]], 1
    )
    np.testing.assert_array_equal(
        logits(loaded, images), logits(tree.unflatten_like(params, want), images)
    )


def test_truncated_and_foreign_files(params, tmp_path):
    from safetensors.numpy import save_file

    npz.write_npz(tmp_path / "a.npz", tree.flatten(params))
    raw = (tmp_path / "a.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"t\.npz: cannot read an \.npz parameter file"):
        sources.load_source(tmp_path / "t.npz")
    save_file(convert.flax_to_timm(params, CFG), tmp_path / "a.safetensors")
    raw = (tmp_path / "a.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"t\.safetensors: not a readable"):
        sources.load_vit_checkpoint(tmp_path / "t.safetensors", CFG)
    (tmp_path / "x.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"x\.pt: unsupported file type.*orbax"):
        sources.load_source(tmp_path / "x.pt")
    with pytest.raises(ValueError, match="neither an existing path nor a known name"):
        sources.load_source("vit-h14")
    save_file({"foo.bar": np.ones(3, np.float32)}, tmp_path / "o.safetensors")
    with pytest.raises(ValueError, match="neither timm"):
        sources.load_vit_checkpoint(tmp_path / "o.safetensors", CFG)
    with pytest.raises(ValueError, match=r"x\.pt: expected a \.npz or \.safetensors"):
        sources.load_vit_checkpoint(tmp_path / "x.pt", CFG)


def test_safetensors_source_stays_torch_layout(params, tmp_path):
    from safetensors.numpy import save_file

    save_file(convert.flax_to_timm(params, CFG), tmp_path / "m.safetensors")
    sd, info = sources.load_source(str(tmp_path / "m.safetensors"))
    assert (info.kind, info.layout, info.config) == ("safetensors", "timm", None)
    assert sd["head.weight"].shape == (5, 32)
    save_file(convert.flax_to_hf(params, CFG), tmp_path / "hf.safetensors")
    assert sources.load_source(tmp_path / "hf.safetensors")[1].layout == "hf"


def test_named_random_init_statistics():
    p, info = sources.load_source("vit-ti16", seed=0)
    assert (info.kind, info.source, info.layout, info.seed) == ("random", "vit-ti16", "flax", 0)
    assert info.config == vit.config_for("ti16")
    abstract = vit.abstract_params(info.config)
    assert jax.tree.structure(p) == jax.tree.structure(abstract)
    for path, leaf in tree.flatten(abstract).items():
        assert tree.flatten(p)[path].shape == leaf.shape, path
    w = tree.matrices(p)["Transformer/encoderblock_0/MlpBlock_0/Dense_1/kernel"]  # (192, 768)
    assert abs(w.var() * 768 - 1) < 0.02
    s = np.linalg.svd(w, compute_uv=False)
    assert abs(s[0] / (1 + np.sqrt(192 / 768)) - 1) < 0.05  # MP edge
    again, _ = sources.load_source("vit-ti16", seed=0)
    np.testing.assert_array_equal(again["head"]["kernel"], p["head"]["kernel"])
    other, _ = sources.load_source("vit-ti16", seed=1)
    assert not np.array_equal(other["head"]["kernel"], p["head"]["kernel"])
    assert convert.infer_config(p) == vit.config_for("ti16")


def test_orbax_directory(params, tmp_path):
    checkpoint = pytest.importorskip("mpjax.checkpoint")
    masks = jax.tree.map(lambda x: np.abs(x) > 0.05, params)
    checkpoint.save_params(tmp_path / "ckpt", params, masks, {"note": "hello"})
    loaded, info = sources.load_source(tmp_path / "ckpt")
    assert (info.kind, info.layout, info.config) == ("orbax", "flax", CFG)
    assert info.meta["note"] == "hello"
    for k, v in tree.flatten(params).items():
        np.testing.assert_array_equal(np.asarray(tree.flatten(loaded)[k]), v)
    for k, m in tree.flatten(masks).items():
        np.testing.assert_array_equal(np.asarray(tree.flatten(info.masks)[k]), m)


def test_loaded_model_apply_fn(params, images, tmp_path):
    npz.write_npz(tmp_path / "bv.npz", tree.flatten(params))
    model = sources.load_model(tmp_path / "bv.npz")
    assert isinstance(model, LoadedModel) and model.config == CFG and model.info.kind == "npz"
    np.testing.assert_array_equal(model.apply_fn(0)(model.params, images), logits(params, images))
    merged = model.apply_fn(2)(model.params, images)
    assert merged.shape == (2, 5) and not np.allclose(merged, logits(params, images))
    not_a_vit = LoadedModel({"w": np.ones((2, 2))}, None, SourceInfo("npz", "w.npz", None, "flax"))
    with pytest.raises(ValueError, match="not a ViT"):
        not_a_vit.apply_fn()


def test_shipped_model(tmp_path, monkeypatch):
    params, info = sources.load_source(sources.SHIPPED)
    assert (info.kind, info.source, info.layout) == ("shipped", "shipped", "flax")
    assert info.config == vit.config_for("fmnist") and info.meta["test_accuracy"] >= 0.85
    assert convert.infer_config(params) == info.config
    model = sources.load_model("shipped")
    assert model.config is model.info.config and model.info.kind == "shipped"
    # a file of that name is read as a file, as for the random-init names
    monkeypatch.chdir(tmp_path)
    npz.write_npz(tmp_path / "shipped", tree.flatten(params))
    with pytest.raises(ValueError, match="unsupported file type"):
        sources.load_source("shipped")


NONFINITE_LEAVES = (
    "Transformer/encoderblock_1/LayerNorm_0/scale",
    "Transformer/encoderblock_0/MlpBlock_0/Dense_0/bias",
    "Transformer/posembed_input/pos_embedding",
    "cls",
)


def _poisoned(params, path, value):
    flat = {k: np.array(v) for k, v in tree.flatten(params).items()}
    flat[path].reshape(-1)[-1] = value
    return flat


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("leaf", NONFINITE_LEAVES)
def test_nonfinite_leaf_outside_weight_matrices_is_refused(params, tmp_path, leaf, value):
    """NaN/Inf in a LayerNorm scale, a bias or an embedding: every source kind refuses it."""
    flat = _poisoned(params, leaf, value)
    npz.write_npz(tmp_path / "bad.npz", flat)
    with pytest.raises(ValueError, match=f"bad.npz.*'{leaf}'.*NaN or Inf"):
        sources.load_source(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match=f"'{leaf}'.*NaN or Inf"):
        sources.load_vit_checkpoint(tmp_path / "bad.npz", CFG)


def test_nonfinite_leaf_refused_for_every_source_kind(params, tmp_path, monkeypatch):
    from safetensors.numpy import save_file

    from mpjax import checkpoint
    from mpjax.models import shipped

    leaf = "Transformer/encoderblock_1/LayerNorm_0/scale"
    bad = npz.unflatten_dict(_poisoned(params, leaf, np.nan))
    timm = convert.flax_to_timm(params, CFG)
    timm["blocks.1.norm1.weight"][0] = np.inf  # the same LayerNorm, torch layout
    save_file(timm, tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="'blocks.1.norm1.weight'.*NaN or Inf"):
        sources.load_source(tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match=f"'{leaf}'.*NaN or Inf"):
        sources.load_vit_checkpoint(tmp_path / "bad.safetensors", CFG)
    checkpoint.save_params(tmp_path / "ckpt", bad)
    with pytest.raises(ValueError, match=f"ckpt.*'{leaf}'.*NaN or Inf"):
        sources.load_source(tmp_path / "ckpt")
    monkeypatch.setattr(sources, "random_init", lambda config, seed=0: bad)
    with pytest.raises(ValueError, match=f"vit-ti16.*'{leaf}'"):
        sources.load_source("vit-ti16")
    monkeypatch.setattr(shipped, "load_shipped_model", lambda: (bad, CFG, {}))
    with pytest.raises(ValueError, match=f"shipped.*'{leaf}'"):
        sources.load_source(sources.SHIPPED)
    masks_only_ints = {"w": np.ones((2, 2), np.float32), "step": np.array(3), "m": np.ones(2, bool)}
    tree.check_finite_leaves(masks_only_ints)  # ints and bools are not checked
