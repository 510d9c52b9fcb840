"""The prune job end to end on a small ViT and a tiny IDX dataset written by the test."""

import json
import types

import numpy as np
import pytest
from vit_fixtures import write_idx_and_vit

from mpjax import checkpoint, data, tree
from mpjax.models import load_model, vit
from mpjax.pipeline import PruneJob, format_table, job, run
from mpjax.pipeline.report import OPTIONAL_KEYS
from mpjax.pruning import check_masks, permute_vit, validate_nm
from mpjax.training import evaluate

#: The keys ``report.json`` had when the report was a dict, in its order (all stages run).
OLD_JSON_KEYS = ["source", "method", "pattern", "tome_r", "permuted", "sparsity",
                 "global_sparsity", "skipped", "macs", "acc_dense", "acc_dense_tome",
                 "acc_pruned", "acc_distilled", "distill", "seconds"]  # fmt: skip
#: The dict report's RESULT_KEYS (the quantities of report.md's table).
OLD_RESULT_KEYS = ("source", "tome_r", "permuted", "sparsity", "global_sparsity", "acc_dense",
                   "acc_dense_tome", "acc_pruned", "acc_distilled", "seconds")  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    return root, write_idx_and_vit(root, images=320, train=256)


def _run(setup, tmp_path, **kw):
    root, src = setup
    kw = {"progress": False, **kw}
    prune_job = PruneJob(source=str(src), out=str(tmp_path / "out"), data=str(root),
                         calib_images=32, batch_size=32, **kw)  # fmt: skip
    return prune_job, run(prune_job)


def test_magnitude_with_distillation(setup, tmp_path):
    _, report = _run(setup, tmp_path, method="magnitude", sparsity=0.5, distill_steps=4)
    assert report.sparsity == pytest.approx(0.5, abs=1e-6)
    for acc in (report.acc_dense, report.acc_pruned, report.acc_distilled):
        assert 0.0 <= acc <= 1.0
    assert report.acc_dense_tome is None and report.distill["steps"] == 4
    out = tmp_path / "out"
    for name in ("report.md", "report.png", "report.json", "analysis/analysis.csv",
                 "analysis/esd_grid.png"):  # fmt: skip
        assert (out / name).is_file(), name
    # report.json: the keys of the dict report, in its order (no ToMe: no acc_dense_tome)
    written = json.loads((out / "report.json").read_text())
    assert list(written) == [k for k in OLD_JSON_KEYS if k != "acc_dense_tome"]
    assert set(OLD_RESULT_KEYS) - set(written) == {"acc_dense_tome"}
    assert written == json.loads(report.to_json())
    params, m, meta = checkpoint.restore_params(out / "checkpoint")
    check_masks(params, m)
    for path, mask in tree.flatten(m).items():
        leaf = np.asarray(tree.flatten(params)[path])
        assert not np.any(leaf[~np.asarray(mask)]), f"{path}: pruned weight non-zero"
    assert meta["result"] == written and meta["job"]["method"] == "magnitude"
    # the reported accuracies are those of the dense source and of the saved checkpoint
    root, src = setup
    model, test = load_model(str(src)), data.load_fashion_mnist("test", data_dir=root)
    assert model.info.kind == "npz" and model.config == vit.config_for("fmnist")
    acc = {"acc_dense": evaluate(model.params, model.apply_fn(0), *test),
           "acc_distilled": evaluate(params, model.apply_fn(0), *test)}  # fmt: skip
    assert acc == pytest.approx({k: getattr(report, k) for k in acc}, abs=1e-9)


def test_cast_nm_with_permutation_and_tome(setup, tmp_path, capfd):
    capfd.readouterr()
    _, report = _run(setup, tmp_path, method="cast", pattern="2:4", tome_r=2, permute=True,
                     progress=True)  # fmt: skip
    # every step says what it does, as plain lines (stderr is not a terminal here)
    err = capfd.readouterr().err.splitlines()
    for line in ("prune: data: reading the train split of fashion-mnist from",
                 "prune: calibration: capturing the layer inputs of 32 images",
                 "prune: CAST 2:4: layer 1/24 ", "prune: CAST 2:4: 24 layers in",
                 "prune: evaluating the dense model on 64 test images",
                 "prune: evaluating the pruned model on 64 test images"):  # fmt: skip
        assert any(e.startswith(line) for e in err), (line, err)
    assert report.permuted and report.tome_r == 2
    assert report.acc_dense_tome is not None and report.distill is None
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert list(written) == [k for k in OLD_JSON_KEYS if k != "distill"]
    params, m, _ = checkpoint.restore_params(tmp_path / "out" / "checkpoint")
    assert validate_nm(m, 2, 4, raise_on_error=False) == {}
    assert len(tree.flatten(m)) == 24  # q, k, v, out, fc1, fc2 of 4 blocks, all 2:4
    assert report.sparsity == pytest.approx(0.5)
    # MACs written out for the fmnist ViT (17 tokens, 7x7x1 patches, d=64, mlp=128, 4 blocks):
    # 2:4 halves qkv/proj/fc1/fc2, ToMe r=2 runs blocks at 17, 15, 13, 11 tokens
    d, mlp, stem = 64, 128, 16 * 49 * 64 + 64 * 10
    dense = stem + 4 * (17 * (4 * d * d + 2 * d * mlp) + 2 * 17 * 17 * d)
    sparse = stem + sum(
        0.5 * t * (4 * d * d + 2 * d * mlp) + 2 * t * t * d for t in (17, 15, 13, 11)
    )
    assert report.macs.dense_gmac == pytest.approx(dense / 1e9, rel=1e-9)
    assert report.macs.reduction == pytest.approx(1 - sparse / dense, rel=1e-9)
    assert written["macs"] == report.macs.to_dict()


def test_permutation_alone_keeps_the_dense_function(setup):
    _, src = setup
    model = load_model(str(src))
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    permuted, perms = permute_vit(model.params, 4)
    assert perms
    f = model.apply_fn(0)
    np.testing.assert_allclose(f(model.params, x), f(permuted, x), atol=1e-5)


def test_without_data_only_pruning_is_reported(tmp_path):
    report = run(PruneJob(source="vit-ti16", out=str(tmp_path / "o"), sparsity=0.3,
                          include="*encoderblock_0/*", progress=False))  # fmt: skip
    assert report.acc_dense is None and report.macs is not None
    written = json.loads((tmp_path / "o" / "report.json").read_text())
    assert list(written) == [k for k in OLD_JSON_KEYS if k not in OPTIONAL_KEYS]
    table = format_table(report)  # what `mpjax prune` prints without --data
    assert "{" not in table and "distillation" not in table
    assert table.endswith("accuracy not measured: pass --data to evaluate")


def test_low_rank_reports_the_ranks_and_the_parameters_removed(setup, tmp_path, monkeypatch):
    monkeypatch.setattr(job, "analyze_to_dir", lambda *a, **k: types.SimpleNamespace(rows=[]))
    _, src = setup
    report = run(PruneJob(source=str(src), out=str(tmp_path / "o"), method="lowrank",
                          sparsity=0.5, progress=False))  # fmt: skip
    ranks = report.lowrank["ranks"]
    # (64 x 64) layers keep rank 16, (128 x 64) ones rank 21: r (d_out + d_in) <= 0.5 d_out d_in
    assert len(ranks) == 24 and sorted(set(ranks.values())) == [16, 21]
    # was "sparsity 0.0": the share of parameters that the rank-r factors save
    assert report.sparsity == pytest.approx(report.lowrank["params_removed"])
    assert 0.5 <= report.sparsity < 0.55  # ranks are rounded down
    # what runs is dense (rank-r matrices in place): no MAC saved, the factored cost beside it
    assert report.macs.reduction == 0.0 and report.macs.note.startswith("counted dense: low rank")
    assert report.macs.factored_gmac < report.macs.pruned_gmac
    md = (tmp_path / "o" / "report.md").read_text()
    assert "| layer | shape | sparsity | pattern | rank |" in md and "| 21 |" in md
    assert "parameters removed (rank-r factors)" in format_table(report)


def test_low_rank_refuses_a_distillation_that_would_undo_it():
    with pytest.raises(ValueError, match="--distill-steps: low rank keeps no mask"):
        PruneJob(source="shipped", out="x", method="lowrank", sparsity=0.5,
                 data="fashion-mnist", distill_steps=10).validate()  # fmt: skip


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(method="magnitude", sparsity=1.5), "sparsity"),
        (dict(method="nope", sparsity=0.5), "--method"),
        (dict(method="cast", pattern="2:4"), "--data"),
        (dict(method="magnitude", pattern="2:4", sparsity=0.3), "contradicts"),
        (dict(method="hybrid", sparsity=0.5), "--data"),
        (dict(method="ser", pattern="2:4", data="fashion-mnist"), "--pattern.*no 2:4 form"),
        (dict(method="cast", sparsity=0.5, data="fashion-mnist"), "--pattern.*no unstructured"),
    ],
)
def test_bad_jobs_fail_before_work(kw, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        PruneJob(source="vit-ti16", out=str(tmp_path), **kw).validate()
    assert not any(tmp_path.iterdir())


def test_checkpoint_sources_check_tome_and_calibration_before_the_work(setup, tmp_path, monkeypatch):
    """A file source's token count and a data folder's size are known only after loading: the
    job checks --tome and --calib-images then, before the MP analysis."""
    analysed = []
    monkeypatch.setattr(job, "analyze_to_dir", lambda *a, **k: analysed.append(1))
    root, src = setup
    with pytest.raises(ValueError, match=r"--tome 99: the model has 17 tokens.*at most 8"):
        run(PruneJob(source=str(src), out=str(tmp_path / "a"), pattern="2:4", tome_r=99,
                     progress=False))
    with pytest.raises(ValueError, match=r"--calib-images 300: the training split has 256"):
        run(PruneJob(source=str(src), out=str(tmp_path / "b"), pattern="2:4", data=str(root),
                     calib_images=300, progress=False))
    assert analysed == []
