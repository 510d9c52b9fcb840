"""MAC accounting: the ViT-B/16 numbers of `docs/method/macs.md` and an independent per-term oracle."""

import pytest

from mpjax.arch import macs

SPARSE = dict.fromkeys(("qkv", "proj", "fc1", "fc2"), "2:4")


def oracle(d, m, layers, classes, tome_r=0, frac=1.0, tokens=197, patch_in=768, mlp_shift=0):
    """Sum of the terms of `docs/method/macs.md` written out directly (no shared code with mpjax.arch)."""
    total = (tokens - 1) * patch_in * d + d * classes
    n = tokens
    for _ in range(layers):
        n_next = n - min(tome_r, (n - 1) // 2)
        n_mlp = n_next if mlp_shift else n
        total += frac * (n * 4 * d * d + n_mlp * 2 * d * m) + 2 * n * n * d
        n = n_next
    return total


def test_vit_b16_dense_matches_docs():
    rep = macs.vit_macs("vit-b16")
    assert rep.total == rep.dense_total == oracle(768, 3072, 12, 1000) == 17_563_828_224
    assert round(rep.total / 1e9, 3) == 17.564
    assert rep.reduction == 0.0


def test_vit_b16_sparse_tome_matches_docs():
    rep = macs.vit_macs("vit-b16", SPARSE, tome_r=8)
    assert round(rep.total / 1e9, 3) == 7.059
    assert round(100 * rep.reduction, 2) == 59.81
    assert rep.total == pytest.approx(oracle(768, 3072, 12, 1000, tome_r=8, frac=0.5))
    assert [r.tokens for r in rep.rows if r.layer_type == "fc1"] == [197 - 8 * i for i in range(12)]


def test_without_head_or_patch_embed_the_docs_numbers_do_not_reproduce():
    # Documents which terms the accounting includes: dropping the head gives 17.563, not 17.564.
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


def test_uniform_r_equals_per_block_r():
    assert (
        macs.vit_macs("vit-b16", tome_r=(8,) * 12).total == macs.vit_macs("vit-b16", tome_r=8).total
    )
    with pytest.raises(ValueError, match="one per block"):
        macs.vit_macs("vit-b16", tome_r=(8, 8))


def test_dense_and_k_equal_n_count_dense():
    # MAC accounting parses with allow_dense=True: "dense", None and "4:4" cost the dense MACs.
    rep = macs.vit_macs("vit-b16", {"fc1": "dense", "fc2": "4:4", "qkv": None, "proj": (2, 4)})
    rows = {r.name: r for r in rep.rows}
    assert rows["blocks.0.mlp.fc1"].pattern is None
    assert rows["blocks.0.mlp.fc2"].pattern == "4:4"
    assert rows["blocks.0.mlp.fc2"].macs == rows["blocks.0.mlp.fc2"].dense_macs
    assert rows["blocks.0.attn.proj"].pattern == "2:4"
    assert rows["blocks.0.attn.proj"].macs == rows["blocks.0.attn.proj"].dense_macs / 2


def test_vit_macs_accepts_models_config():
    vit = pytest.importorskip("mpjax.models.vit")
    assert macs.vit_macs(vit.config_for("b16")).total == macs.vit_macs("vit-b16").total


@pytest.mark.parametrize("bad", ["2-4", "5:4", "0:4", "a:b"])
def test_bad_patterns_raise(bad):
    with pytest.raises(ValueError, match="pattern"):
        macs.vit_macs("vit-b16", {"fc1": bad})


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="unknown layer"):
        macs.vit_macs("vit-b16", {"mlp": "2:4"})
    with pytest.raises(ValueError, match="tome_convention"):
        macs.vit_macs("vit-b16", tome_convention="after")
