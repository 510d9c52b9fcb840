"""``mpjax analyze``: loads the source through mpjax.models and writes the report."""

import json

import numpy as np
import pytest

from mpjax import models
from mpjax.cli import analyze


def test_main_loads_source_and_writes_report(rng, tmp_path, monkeypatch, capsys):
    params = {
        f"Dense_{i}": {"kernel": (rng.standard_normal((48, 96)) / 7).astype(np.float32)}
        for i in range(3)
    }
    params["Conv_0"] = {"kernel": rng.standard_normal((3, 3, 4, 32)).astype(np.float32)}
    seen = []
    monkeypatch.setattr(models, "load_source", lambda source: (seen.append(source), (params, {}))[1])
    out = tmp_path / "out"
    rc = analyze.main(["fake-src", "--out", str(out), "--method", "calibrated", "--exclude", "Conv*"])
    assert rc == 0 and seen == ["fake-src"]
    printed = capsys.readouterr().out
    assert str(out) in printed and "3 layers" in printed
    layers = json.loads((out / "analysis.json").read_text())
    assert layers["config"]["method"] == "calibrated" and len(layers["layers"]) == 3
    for name in analyze.REPORT_FILES:
        assert (out / name).stat().st_size > 0


def test_bad_out_is_refused_before_loading(tmp_path, monkeypatch, capsys):
    from mpjax.cli import dispatch

    monkeypatch.setattr(models, "load_source", lambda source: pytest.fail("loaded"))
    (tmp_path / "file").write_text("keep")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    (tmp_path / "link").symlink_to(tmp_path / "mine")
    for bad in ("file", "file/sub", "mine", "link"):
        assert dispatch.main(["analyze", "shipped", "--out", str(tmp_path / bad)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--out" in err and str(tmp_path / bad) in err
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_failed_analysis_leaves_no_empty_out(rng, tmp_path, monkeypatch, capsys):
    from mpjax.cli import dispatch

    params = {"Dense_0": {"kernel": rng.standard_normal((48, 96)).astype(np.float32)}}
    monkeypatch.setattr(models, "load_source", lambda source: (params, {}))
    out = tmp_path / "a" / "b"
    assert dispatch.main(["analyze", "src", "--out", str(out), "--include", "nothing*"]) == 2
    assert list(tmp_path.iterdir()) == []
