"""MAC accounting from the masks that were applied: skipped and excluded layers count dense,
the prune report agrees with ``mpjax export`` on the same checkpoint."""

import types

import numpy as np
import pytest

from mpjax import arch, checkpoint, export, npz, tree
from mpjax.models import random_init, vit
from mpjax.pipeline import PruneJob, job, run
from mpjax.pipeline.macs import layer_patterns, mac_summary
from mpjax.pruning import magnitude_masks, nm_masks

CONFIG = vit.config_for("fmnist")  # 17 tokens, d=64, mlp=128, 4 blocks
FC1 = "Transformer/encoderblock_1/MlpBlock_0/Dense_0/kernel"
QUERY = "Transformer/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel"


@pytest.fixture(scope="module")
def params():
    return random_init(CONFIG, seed=1)


def _masks(params, include):
    return nm_masks(params, 2, 4, views=tree.select(params, include=include))


def test_only_the_masked_layers_count_sparse(params):
    masks = _masks(params, FC1)
    assert layer_patterns(masks, CONFIG, "2:4") == {"blocks.1.mlp.fc1": "2:4"}
    m = mac_summary(CONFIG, masks, "2:4")
    # one fc1 (17 tokens x 64 x 128) at half its MACs; the old count halved all 16 layers
    dense = arch.vit_macs(CONFIG).dense_total
    assert m.reduction == pytest.approx(0.5 * 17 * 64 * 128 / dense, rel=1e-12)
    assert m.note.startswith("1 of 18 linear layers run 2:4")


def test_qkv_counts_sparse_only_when_query_key_and_value_are_masked(params):
    assert layer_patterns(_masks(params, QUERY), CONFIG, "2:4") == {}
    fused = _masks(params, "*encoderblock_0/*Attention_0/[qkv]*/kernel")
    assert layer_patterns(fused, CONFIG, "2:4") == {"blocks.0.attn.qkv": "2:4"}


def test_unstructured_masks_and_no_masks_change_no_macs(params):
    masks = magnitude_masks(params, 0.9, views=tree.select(params, include=job.VIT_BLOCKS))
    m = mac_summary(CONFIG, masks, "unstructured")
    assert m.reduction == 0.0 and "unstructured sparsity does not change MACs" in m.note
    assert mac_summary(CONFIG, None, "2:4").reduction == 0.0
    # ToMe does change them
    assert mac_summary(CONFIG, None, "2:4", tome_r=2).reduction > 0.1


def test_low_rank_counts_dense_and_gives_the_factored_cost(params):
    views = tree.select(params, include=FC1)
    m = mac_summary(CONFIG, None, "unstructured", ranks={FC1: 8}, views=views)
    assert m.reduction == 0.0 and m.note.startswith("counted dense: low rank replaces each W")
    saved = 17 * (64 * 128 - 8 * (64 + 128))
    assert m.factored_gmac == pytest.approx(m.pruned_gmac - saved / 1e9, rel=1e-12)


@pytest.fixture(scope="module")
def source(tmp_path_factory, params):
    src = tmp_path_factory.mktemp("macs") / "vit.npz"
    npz.write_npz(src, tree.flatten(params))
    return src


@pytest.fixture
def no_analysis(monkeypatch):
    """The MP analysis (and its plots) is not what these tests are about: skip it."""
    monkeypatch.setattr(job, "analyze_to_dir", lambda *a, **k: types.SimpleNamespace(rows=[]))


def _export_macs(out, pattern, tome_r):
    params, masks, _ = checkpoint.restore_params(out / "checkpoint")
    manifest = export.export_vit(params, CONFIG, out / "export", masks=masks, patterns=pattern,
                                 tome_r=tome_r)  # fmt: skip
    return manifest["macs"]


@pytest.mark.parametrize(
    "pattern, include, tome_r",
    [("2:3", None, 0), ("2:4", FC1, 0), ("2:4", "*encoderblock_[23]/*", 2)],
)
def test_the_prune_report_agrees_with_export(source, tmp_path, no_analysis, pattern, include,
                                             tome_r):  # fmt: skip
    out = tmp_path / "out"
    report = run(PruneJob(source=str(source), out=str(out), method="magnitude", pattern=pattern,
                          include=include, tome_r=tome_r, progress=False))  # fmt: skip
    if pattern == "2:3":  # every layer indivisible by 3: nothing pruned, nothing saved
        assert len(report.skipped) == 24 and report.macs.reduction == 0.0
    if include == FC1:  # was 45.9% for one layer of 24 on the shipped model
        assert 0 < report.macs.reduction < 0.05
    macs = _export_macs(out, pattern, tome_r)
    assert macs["reduction"] == pytest.approx(report.macs.reduction, abs=1e-12)
    assert macs["gmac"] == pytest.approx(report.macs.pruned_gmac, rel=1e-12)
    assert macs["dense_gmac"] == pytest.approx(report.macs.dense_gmac, rel=1e-12)
    assert np.isfinite(report.macs.pruned_gmac)
