"""``mpjax prune --reconstruct / --budget`` and ``mpjax bench quality`` options."""

import json

import numpy as np
import pytest
from vit_fixtures import write_idx_and_vit

from mpjax.cli import dispatch
from mpjax.cli import prune as prune_command
from mpjax.cli.bench import quality


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--sparsity", "0.5", "--reconstruct"], "--reconstruct parallel"),
        (["--sparsity", "0.5", "--reconstruct", "sequential"], "--reconstruct sequential"),
        (["--pattern", "2:4", "--budget", "alpha"], "--budget"),
        (["--method", "lowrank", "--sparsity", "0.5", "--budget", "uniform"], "--budget"),
        (["--method", "lowrank", "--sparsity", "0.5", "--data", "fmnist", "--reconstruct"],
         "--reconstruct"),
    ],
)
def test_bad_refit_or_budget_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, argv,
                                                          flag):  # fmt: skip
    monkeypatch.setattr(prune_command, "run", pytest.fail)  # no work may start
    code = dispatch.main(["prune", "shipped", *argv, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and flag in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_reconstruct_and_budget_options():
    parse = prune_command.build_parser().parse_args
    job = prune_command.job_from_args(parse(["shipped", "--out", "x"]), "shipped")
    assert job.reconstruct == "off" and job.budget is None
    args = parse(["shipped", "--out", "x", "--reconstruct", "--budget", "seb"])
    job = prune_command.job_from_args(args, "shipped")
    assert (job.reconstruct, job.budget) == ("parallel", "seb")
    args = parse(["shipped", "--out", "x", "--reconstruct", "sequential"])
    assert prune_command.job_from_args(args, "shipped").reconstruct == "sequential"
    with pytest.raises(SystemExit):
        parse(["shipped", "--out", "x", "--reconstruct", "always"])


@pytest.fixture(scope="module")
def idx(tmp_path_factory):
    root = tmp_path_factory.mktemp("idx")
    return root, write_idx_and_vit(root)


def test_prune_reports_each_layer_error_before_and_after_the_refit(idx, tmp_path):
    root, src = idx
    out = tmp_path / "o"
    code = dispatch.main(["prune", str(src), "--method", "wanda", "--pattern", "2:4",
                          "--data", str(root), "--calib-images", "16", "--reconstruct",
                          "sequential", "--include", "*encoderblock_1/*", "--out", str(out)])
    assert code == 0
    rec = json.loads((out / "report.json").read_text())["reconstruction"]
    assert rec["mode"] == "sequential" and rec["calib_images"] == 16
    assert len(rec["layers"]) == 6  # query, key, value, out, fc1, fc2 of block 1
    for row in rec["layers"]:
        assert 0 < row["after"] < row["before"] <= 1.5, row
    assert rec["mean_after"] == pytest.approx(np.mean([r["after"] for r in rec["layers"]]))
    md = (out / "report.md").read_text()
    assert "Reconstruction (sequential, 16 calibration images)" in md
    assert md.count("| Transformer/encoderblock_1/") == 12  # sparsity table + error table


def test_budget_is_reported_and_old_reports_gain_no_field(idx, tmp_path):
    root, src = idx
    common = ["prune", str(src), "--sparsity", "0.5", "--include", "*encoderblock_0/*"]
    assert dispatch.main([*common, "--out", str(tmp_path / "a")]) == 0
    plain = json.loads((tmp_path / "a" / "report.json").read_text())
    assert "budget" not in plain and "reconstruction" not in plain
    assert "Per-layer budget" not in (tmp_path / "a" / "report.md").read_text()
    assert dispatch.main([*common, "--budget", "uniform", "--out", str(tmp_path / "b")]) == 0
    uniform = json.loads((tmp_path / "b" / "report.json").read_text())
    assert uniform["budget"] == "uniform"
    # uniform: every layer at 50%, unlike global magnitude
    assert uniform["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert "Per-layer budget: uniform." in (tmp_path / "b" / "report.md").read_text()


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--methods", "magnitude,nope"], "--methods nope"),
        (["--patterns", "3:2"], "--patterns 3:2"),
        (["--sparsities", "1.5"], "--sparsities"),
        (["--steps", "x"], "--steps"),
        (["--reconstruct", "off,twice"], "--reconstruct twice"),
        (["--seeds", "0"], "--seeds"),
    ],
)
def test_bench_quality_bad_option_is_one_line(capsys, argv, flag):
    assert dispatch.main(["bench", "quality", *argv]) == 2
    err = capsys.readouterr().err
    assert flag in err and err.count("\n") == 1, err


def test_bench_quality_grid_from_options():
    args = quality.build_parser().parse_args(
        ["--models", "shipped,shipped-wide", "--patterns", "unstructured,4:8",
         "--sparsities", "0.3,0.7", "--steps", "0,200", "--seeds", "2"])  # fmt: skip
    grid = quality.grid_from_args(args)
    assert grid.models == ("shipped", "shipped-wide") and grid.seeds == (0, 1)
    assert grid.targets == (("unstructured", 0.3), ("unstructured", 0.7), ("4:8", 0.5))
    assert grid.steps == (0, 200) and grid.reconstruct == ("off", "sequential")
    assert grid.methods == quality.BASELINES + quality.MP_GUIDED
