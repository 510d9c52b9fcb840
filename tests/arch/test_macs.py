"""MAC accounting: the SPEC's ViT-B/16 numbers and an independent per-term oracle."""

import pytest

from mpjax.arch import macs

SPARSE = dict.fromkeys(("qkv", "proj", "fc1", "fc2"), "2:4")


def oracle(d, m, layers, classes, tome_r=0, frac=1.0, tokens=197, patch_in=768, mlp_shift=0):
    """Sum of the SPEC's terms written out directly (no shared code with mpjax.arch.macs)."""
    total = (tokens - 1) * patch_in * d + d * classes
    n = tokens
    for _ in range(layers):
        n_next = n - min(tome_r, (n - 1) // 2)
        n_mlp = n_next if mlp_shift else n
        total += frac * (n * 4 * d * d + n_mlp * 2 * d * m) + 2 * n * n * d
        n = n_next
    return total


def test_vit_b16_dense_matches_spec():
    rep = macs.vit_macs("vit-b16")
    assert rep.total == rep.dense_total == oracle(768, 3072, 12, 1000) == 17_563_828_224
    assert round(rep.total / 1e9, 3) == 17.564
    assert rep.reduction == 0.0


def test_vit_b16_sparse_tome_matches_spec():
    rep = macs.vit_macs("vit-b16", SPARSE, tome_r=8)
    assert round(rep.total / 1e9, 3) == 7.059
    assert round(100 * rep.reduction, 2) == 59.81
    assert rep.total == pytest.approx(oracle(768, 3072, 12, 1000, tome_r=8, frac=0.5))
    assert [r.tokens for r in rep.rows if r.layer_type == "fc1"] == [197 - 8 * i for i in range(12)]


def test_without_head_or_patch_embed_the_spec_numbers_do_not_reproduce():
    # Documents which terms the SPEC includes: dropping the head gives 17.563, not 17.564.
    rep = macs.vit_macs("vit-b16")
    head = next(r for r in rep.rows if r.layer_type == "head").macs
    stem = next(r for r in rep.rows if r.layer_type == "patch_embed").macs
    assert round((rep.total - head) / 1e9, 3) == 17.563
    assert round((rep.total - stem) / 1e9, 3) == 17.448


@pytest.mark.parametrize(
    "pattern,frac", [("2:4", 0.5), ("6:12", 0.5), ("8:16", 0.5), ("12:16", 0.75), ("1:4", 0.25)]
)
def test_k_over_n_scaling(pattern, frac):
    rep = macs.vit_macs("vit-s16", dict.fromkeys(("qkv", "proj", "fc1", "fc2"), pattern))
    assert rep.total == pytest.approx(oracle(384, 1536, 12, 1000, frac=frac))
    fc1 = next(r for r in rep.rows if r.name == "blocks.0.mlp.fc1")
    assert fc1.macs == pytest.approx(frac * fc1.dense_macs) and fc1.pattern == pattern


def test_per_layer_name_overrides_layer_type():
    rep = macs.vit_macs("vit-b16", {"fc1": "2:4", "blocks.3.mlp.fc1": None})
    rows = {r.name: r for r in rep.rows}
    assert rows["blocks.3.mlp.fc1"].pattern is None
    assert rows["blocks.4.mlp.fc1"].macs == rows["blocks.4.mlp.fc1"].dense_macs / 2


def test_merge_convention_charges_mlp_after_merge():
    block = macs.vit_macs("vit-b16", tome_r=8)
    merge = macs.vit_macs("vit-b16", tome_r=8, tome_convention="merge")
    assert merge.total == pytest.approx(oracle(768, 3072, 12, 1000, tome_r=8, mlp_shift=1))
    assert merge.total < block.total


def test_tome_schedule_clips_and_matches_models_tome():
    assert macs.tome_schedule(197, 3, 8) == (197, 189, 181)
    assert macs.tome_schedule(17, 5, 4) == (17, 13, 9, 5, 3)
    tome = pytest.importorskip("mpjax.models.tome")
    for tokens, r in ((197, 8), (17, 4), (50, 30)):
        assert list(macs.tome_schedule(tokens, 6, r)) == tome.token_schedule(tokens, 6, r)[:6]


def test_per_block_r_matches_models_tome_and_uniform_r():
    assert macs.tome_schedule(197, 3, (0, 16, 8)) == (197, 197, 181)
    assert (
        macs.vit_macs("vit-b16", tome_r=(8,) * 12).total == macs.vit_macs("vit-b16", tome_r=8).total
    )
    tome = pytest.importorskip("mpjax.models.tome")
    rs = (0, 5, 30, 2)
    assert list(macs.tome_schedule(50, 4, rs)) == tome.token_schedule(50, 4, rs)[:4]
    with pytest.raises(ValueError, match="one per block"):
        macs.vit_macs("vit-b16", tome_r=(8, 8))
    with pytest.raises(ValueError, match="tome_r"):
        macs.tome_schedule(197, 2, -1)


def test_vit_dims_from_models_config():
    vit = pytest.importorskip("mpjax.models.vit")
    assert macs.vit_dims(vit.config_for("l16")) == macs.PRESETS["vit-l16"]
    assert macs.vit_dims("b16") == macs.PRESETS["vit-b16"]
    small = macs.vit_dims(vit.config_for("fmnist"))
    assert (small.tokens, small.channels, small.num_classes) == (17, 1, 10)


@pytest.mark.parametrize("bad", ["2-4", "5:4", "0:4", "a:b"])
def test_bad_patterns_raise(bad):
    with pytest.raises(ValueError, match="pattern"):
        macs.vit_macs("vit-b16", {"fc1": bad})


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="unknown layer"):
        macs.vit_macs("vit-b16", {"mlp": "2:4"})
    with pytest.raises(ValueError, match="preset"):
        macs.vit_dims("vit-h14")
    with pytest.raises(ValueError, match="tome_convention"):
        macs.vit_macs("vit-b16", tome_convention="after")
    with pytest.raises(ValueError, match="mlp"):
        macs.vit_dims({"hidden": 8, "layers": 1, "patch_size": 4, "heads": 1, "num_classes": 2})
