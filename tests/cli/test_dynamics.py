"""Tests of ``mpjax dynamics``: a JSON config, --resume with the stored config, the plots."""

import json
import os

import dynamics_fixtures
import pytest

from mpjax.cli.dynamics import build_parser, main
from mpjax.dynamics import Arm, read_index
from mpjax.dynamics.config import replace, to_dict

#: The shared tiny config, one epoch, with an L1 member in place of MP+L2.
TINY = replace(
    dynamics_fixtures.TINY,
    epochs=1,
    arms=(Arm("none"), Arm("L2", l2=1e-2), Arm("L1", l1=1e-3)),
)


def test_main_with_json_config_then_resume_with_the_stored_one(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(to_dict(TINY)))
    out = str(tmp_path / "cli")
    assert main(["--config", str(path), "--out", out]) == 0
    assert main(["--out", out, "--resume", "--epochs", "2", "--no-plots"]) == 0
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
