"""``mpjax prune`` and ``mpjax demo``: options, printed output, bad input as one sentence."""

import json

import pytest

from mpjax.cli import demo, dispatch
from mpjax.cli import prune as prune_command


def test_cli_prune_without_data(tmp_path, capsys):
    code = dispatch.main(["prune", "vit-ti16", "--method", "magnitude", "--sparsity", "0.3",
                          "--out", str(tmp_path / "o"), "--include", "*encoderblock_0/*"])
    assert code == 0
    result = json.loads((tmp_path / "o" / "report.json").read_text())
    assert result["sparsity"] == pytest.approx(0.3, abs=1e-6)
    printed = capsys.readouterr().out
    # without data nothing is evaluated: the report's JSON is printed, then where it is
    body, last = printed.rstrip("\n").rsplit("\n", 1)
    assert json.loads(body) == result
    assert last == f"report: {tmp_path / 'o' / 'report.md'}"


def test_bad_option_is_one_sentence(tmp_path, capsys):
    code = dispatch.main(["prune", "vit-ti16", "--pattern", "2:4", "--sparsity", "0.3",
                          "--out", str(tmp_path / "o")])
    assert code == 2
    assert "contradicts" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_prune_options_and_defaults():
    args = prune_command.build_parser().parse_args(["shipped", "--out", "x", "--tome", "2"])
    job = prune_command.job_from_args(args, args.source)
    assert (job.source, job.out, job.method, job.pattern, job.tome_r) == (
        "shipped", "x", "magnitude", "unstructured", 2
    )
    assert job.sparsity is None and job.calib_images == 256 and job.distill_lr == 5e-4
    with pytest.raises(SystemExit):
        prune_command.build_parser().parse_args(["shipped"])  # --out is required


def test_demo_defaults_are_the_readme_command():
    args = demo.build_parser().parse_args([])
    job = prune_command.job_from_args(args, "shipped")
    assert (job.method, job.pattern, job.data, job.tome_r, job.permute, job.distill_steps) == (
        "cast", "2:4", "fashion-mnist", 1, True, 300
    )
    assert job.out == "runs/demo"
    assert demo.build_parser().parse_args(["--method", "magnitude"]).method == "magnitude"
