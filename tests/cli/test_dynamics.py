"""Tests of ``mpjax dynamics``: a JSON config, --resume with the stored config, the plots."""

import json
import os

import dynamics_fixtures
import pytest

from mpjax.cli import dispatch, output
from mpjax.cli.dynamics import build_parser, main
from mpjax.dynamics import Arm, read_index
from mpjax.dynamics.config import replace, to_dict

#: The shared tiny config, one epoch, with an L1 member in place of MP+L2.
TINY = replace(
    dynamics_fixtures.TINY,
    epochs=1,
    arms=(Arm("none"), Arm("L2", l2=1e-2), Arm("L1", l1=1e-3)),
)


def test_main_with_json_config_then_resume_with_the_stored_one(tmp_path, capsys):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(to_dict(TINY)))
    out = str(tmp_path / "cli")
    assert main(["--config", str(path), "--out", out]) == 0
    assert capsys.readouterr().out.rstrip().endswith(f"run written to {out}: summary.json, plots/")
    os.remove(os.path.join(out, output.MARKER))  # a run made before the marker existed
    assert main(["--out", out, "--resume", "--epochs", "2", "--no-plots"]) == 0
    assert output.owned(out, "dynamics")
    assert [e["epoch"] for e in read_index(out)] == [0, 1, 2]
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert [a["arm"] for a in summary["arms"]] == ["none", "L2", "L1"]
    for name in ("bulk_edge", "energy", "esd", "spikes"):
        assert os.path.getsize(os.path.join(out, "plots", f"{name}.png")) > 1000


def test_main_without_config_needs_a_stored_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "none"), "--resume"])
    assert exit_info.value.code == 2
    assert "--config is required" in capsys.readouterr().err
    with pytest.raises(ValueError, match="neither a named config"):
        main(["--config", "nope", "--out", str(tmp_path / "x")])


def test_parser_keeps_the_flags():
    args = build_parser().parse_args(["--out", "d", "--epochs", "3"])
    assert (args.config, args.out, args.resume, args.epochs, args.no_plots) == (
        None, "d", False, 3, False,
    )  # fmt: skip


def test_foreign_or_bad_out_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    (tmp_path / "file").write_text("keep")
    for bad in ("mine", "file", "file/sub"):
        code = dispatch.main(["dynamics", "--config", "small", "--out", str(tmp_path / bad)])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "--out" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "mine"]
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    # argparse errors are one line too (--config is required without a stored run)
    assert dispatch.main(["dynamics", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_results_json_carries_config_command_and_verdicts(tmp_path, capsys):
    cfg = replace(
        TINY,
        experiment="noise",
        arms=(Arm("none"), Arm("MP+L1+L2", l1=1e-4, l2=1e-2, mp=True)),
        noise_layers="non_final",
        noise_eps="std",
        noise_arm="MP+L1+L2",
        noise_levels=(0.0, 0.01, 0.05),
        noise_draws=1,
    )
    path, res = tmp_path / "cfg.json", tmp_path / "res.json"
    path.write_text(json.dumps(to_dict(cfg)))
    argv = [
        "--config",
        str(path),
        "--out",
        str(tmp_path / "o"),
        "--no-plots",
        "--results",
        str(res),
    ]
    assert main(argv) == 0
    doc = json.load(open(res))
    assert doc["command"] == "mpjax dynamics " + " ".join(argv)
    assert doc["config"]["noise_eps"] == "std" and doc["result"]["noise"][1]["eps"] == 0.01
    claims = [v["claim"] for v in doc["verdicts"]]
    assert any("beats" in c for c in claims) and any("monotonically" in c for c in claims)
    assert {v["verdict"] for v in doc["verdicts"]} <= {"supported", "contradicted", "undecided"}
    with pytest.raises(ValueError, match="--compare"):
        main(argv[:4] + ["--compare", str(tmp_path / "missing.json")])
