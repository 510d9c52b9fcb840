"""The one table of ViT shapes (mpjax.arch.vit) and the model presets built from it."""

import dataclasses

import pytest

from mpjax import arch


def test_presets_and_derived_sizes():
    b16 = arch.PRESETS["vit-b16"]
    assert (b16.hidden, b16.layers, b16.mlp, b16.heads) == (768, 12, 3072, 12)
    assert (b16.patches, b16.tokens) == (196, 197)
    assert b16 == arch.ViTDims()  # the defaults are ViT-B/16
    fm = arch.PRESETS["vit-fmnist"]
    assert (fm.tokens, fm.channels, fm.num_classes) == (17, 1, 10)
    for name, dims in arch.PRESETS.items():
        assert dims.hidden % dims.heads == 0, name
        assert dims.image_size % dims.patch_size == 0, name


def test_vit_dims_from_names_mappings_and_objects():
    assert arch.vit_dims("b16") is arch.PRESETS["vit-b16"]
    assert arch.vit_dims("vit-l16") is arch.PRESETS["vit-l16"]
    d = arch.PRESETS["vit-s16"]
    assert arch.vit_dims(d) is d
    as_dict = {"hidden_size": 384, "num_layers": 12, "mlp_dim": 1536, "num_heads": 6,
               "patch_size": (16, 16), "num_classes": 1000}  # fmt: skip
    assert arch.vit_dims(as_dict) == d
    assert arch.vit_dims(dataclasses.asdict(d)) == d


def test_vit_dims_errors():
    with pytest.raises(ValueError, match="preset"):
        arch.vit_dims("vit-h14")
    with pytest.raises(ValueError, match="mlp"):
        arch.vit_dims({"hidden": 8, "layers": 1, "patch_size": 4, "heads": 1, "num_classes": 2})


def test_model_presets_come_from_the_arch_table():
    vit = pytest.importorskip("mpjax.models.vit")
    for name, dims in arch.PRESETS.items():
        cfg = vit.config_for(name)
        assert arch.vit_dims(cfg) == dims == cfg.dims, name
        assert vit.config_for(name.removeprefix("vit-")) == cfg
    assert arch.vit_dims(vit.ViTConfig()) == arch.ViTDims()
    small = vit.config_for("fmnist", num_layers=2, dtype="bfloat16")
    assert small.num_layers == 2 and small.dtype == "bfloat16" and small.num_tokens == 17
