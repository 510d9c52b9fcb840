"""``mpjax analyze``: loads the source through mpjax.models and writes the report."""

import json

import numpy as np

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
