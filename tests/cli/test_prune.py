"""``mpjax prune`` and ``mpjax demo``: options, printed output, bad input as one sentence."""

import json

import pytest

from mpjax.cli import demo, dispatch, output
from mpjax.cli import prune as prune_command
from mpjax.pipeline import PruneReport


def test_cli_prune_without_data_prints_the_table(tmp_path, capsys):
    code = dispatch.main(["prune", "vit-fmnist", "--method", "magnitude", "--sparsity", "0.3",
                          "--out", str(tmp_path / "o"), "--include", "*encoderblock_0/*"])
    assert code == 0
    result = json.loads((tmp_path / "o" / "report.json").read_text())
    assert result["sparsity"] == pytest.approx(0.3, abs=1e-3)
    printed = capsys.readouterr().out
    # without data nothing is evaluated: the same table as with data, not a JSON dump
    body, last = printed.rstrip("\n").rsplit("\n", 1)
    assert not body.lstrip().startswith("{") and "sparsity of pruned layers" in body
    assert "after distillation" not in body  # no distillation ran
    assert last == f"report: {tmp_path / 'o' / 'report.md'}"
    assert output.owned(tmp_path / "o", "prune")


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--sparsity", "0.5", "--eval-images", "-9000"], "--eval-images"),
        (["--sparsity", "0.5", "--eval-images", "0"], "--eval-images"),
        (["--sparsity", "0.5", "--distill-lr", "-1"], "--distill-lr"),
        (["--sparsity", "0.5", "--distill-lr", "0"], "--distill-lr"),
        (["--sparsity", "0.5", "--distill-steps", "-1"], "--distill-steps"),
        (["--sparsity", "1.0"], "--sparsity"),
        (["--sparsity", "-0.1"], "--sparsity"),
        (["--sparsity", "0.5", "--tome", "100"], "--tome"),
        (["--sparsity", "0.5", "--tome", "-1"], "--tome"),
        (["--sparsity", "0.5", "--data", "fashion-mnist", "--calib-images", "100000"],
         "--calib-images"),
        (["--sparsity", "0.5", "--calib-images", "0"], "--calib-images"),
        (["--method", "cast"], "--method cast"),
        (["--method", "cast", "--sparsity", "0.5"], "--method cast"),
        (["--sparsity", "0.5", "--eval-images", "x"], "--eval-images"),
    ],
)
def test_bad_option_is_one_line_naming_the_flag_before_any_work(tmp_path, capsys, monkeypatch,
                                                                argv, flag):  # fmt: skip
    monkeypatch.setattr(prune_command, "run", pytest.fail)  # no work may start
    code = dispatch.main(["prune", "shipped", *argv, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and flag in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_bad_pattern_is_one_sentence(tmp_path, capsys):
    code = dispatch.main(["prune", "vit-ti16", "--pattern", "2:4", "--sparsity", "0.3",
                          "--out", str(tmp_path / "o")])
    assert code == 2
    assert "contradicts" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _fake_run(job):
    """A prune job that only writes its report (the CLI's handling of --out is under test)."""
    from pathlib import Path

    (Path(job.out) / "report.md").write_text("report")
    return PruneReport(source=job.source, method=job.method, pattern=job.pattern,
                       sparsity=0.5, global_sparsity=0.4)  # fmt: skip


def test_out_is_checked_before_the_job_and_never_clobbered(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(prune_command, "run", _fake_run)
    argv = ["prune", "shipped", "--sparsity", "0.5", "--out"]
    (tmp_path / "file").write_text("keep")
    (tmp_path / "D" / "distill").mkdir(parents=True)
    (tmp_path / "D" / "distill" / "notes.txt").write_text("keep")
    for bad in (tmp_path / "file", tmp_path / "file" / "sub", tmp_path / "D"):
        assert dispatch.main([*argv, str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--out" in err and str(bad) in err
    assert (tmp_path / "D" / "distill" / "notes.txt").read_text() == "keep"
    assert not (tmp_path / "D" / "report.md").exists()
    # an earlier run of prune is accepted again, a foreign folder with --overwrite
    assert dispatch.main([*argv, str(tmp_path / "run")]) == 0
    assert dispatch.main([*argv, str(tmp_path / "run")]) == 0
    assert dispatch.main([*argv, str(tmp_path / "D"), "--overwrite"]) == 0
    assert (tmp_path / "D" / "distill" / "notes.txt").read_text() == "keep"
    # an earlier run of another command is not prune's
    assert dispatch.main(["demo", "--out", str(tmp_path / "run")]) == 2


def test_failed_run_leaves_no_empty_out(tmp_path, capsys, monkeypatch):
    def fail(job):  # as the job does: --out is made, then the data cannot be read
        from pathlib import Path

        Path(job.out).mkdir(parents=True, exist_ok=True)
        raise ValueError("--data: unreadable.")

    monkeypatch.setattr(prune_command, "run", fail)
    out = tmp_path / "new" / "o"
    assert dispatch.main(["prune", "shipped", "--sparsity", "0.5", "--out", str(out)]) == 2
    assert list(tmp_path.iterdir()) == []


def test_data_alias_is_recorded_by_its_canonical_name():
    args = prune_command.build_parser().parse_args(["shipped", "--out", "x", "--data", "fmnist"])
    assert prune_command.job_from_args(args, args.source).data == "fashion-mnist"
    args.data = "FASHION-MNIST"
    assert prune_command.job_from_args(args, args.source).data == "fashion-mnist"


def test_prune_options_and_defaults():
    args = prune_command.build_parser().parse_args(["shipped", "--out", "x", "--tome", "2"])
    job = prune_command.job_from_args(args, args.source)
    assert (job.source, job.out, job.method, job.pattern, job.tome_r) == (
        "shipped", "x", "magnitude", "unstructured", 2
    )
    assert job.sparsity is None and job.calib_images == 256 and job.distill_lr == 5e-4
    assert args.overwrite is False
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
