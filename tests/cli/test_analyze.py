"""``mpjax analyze``: opens the source lazily through mpjax.models and writes the report."""

import json

import numpy as np
import pytest

from mpjax.cli import analyze
from mpjax.models import lazy_sources as models


def test_main_loads_source_and_writes_report(rng, tmp_path, monkeypatch, capsys):
    params = {
        f"Dense_{i}": {"kernel": (rng.standard_normal((48, 96)) / 7).astype(np.float32)}
        for i in range(3)
    }
    params["Conv_0"] = {"kernel": rng.standard_normal((3, 3, 4, 32)).astype(np.float32)}
    seen = []
    monkeypatch.setattr(
        models, "open_source", lambda source: (seen.append(source), (params, {}))[1]
    )
    out = tmp_path / "out"
    rc = analyze.main(
        ["fake-src", "--out", str(out), "--method", "calibrated", "--exclude", "Conv*"]
    )
    assert rc == 0 and seen == ["fake-src"]
    printed = capsys.readouterr().out
    assert str(out) in printed and "3 layers" in printed
    layers = json.loads((out / "analysis.json").read_text())
    assert layers["config"]["method"] == "calibrated" and len(layers["layers"]) == 3
    for name in analyze.REPORT_FILES:
        assert (out / name).stat().st_size > 0


def test_bad_out_is_refused_before_loading(tmp_path, monkeypatch, capsys):
    from mpjax.cli import dispatch

    monkeypatch.setattr(models, "open_source", lambda source: pytest.fail("loaded"))
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
    monkeypatch.setattr(models, "open_source", lambda source: (params, {}))
    out = tmp_path / "a" / "b"
    assert dispatch.main(["analyze", "src", "--out", str(out), "--include", "nothing*"]) == 2
    assert list(tmp_path.iterdir()) == []


def write_shards(rng, folder, n_shards=2):
    """A sharded bfloat16 safetensors checkpoint: tall, wide and square torch weights."""
    import ml_dtypes
    from safetensors.numpy import save_file

    weight_map = {}
    for s in range(n_shards):
        shard = f"model-{s + 1:05d}-of-{n_shards:05d}.safetensors"
        tensors = {
            f"layers.{s}.{k}.weight": (rng.standard_normal(shape) / 8).astype(ml_dtypes.bfloat16)
            for k, shape in (("up", (96, 32)), ("down", (32, 96)), ("sq", (40, 40)))
        }
        save_file(tensors, str(folder / shard))
        weight_map.update(dict.fromkeys(tensors, shard))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def test_sharded_bf16_checkpoint_gives_the_eager_rows(rng, tmp_path, capsys):
    from mpjax.models import load_source
    from mpjax.mp import analysis

    write_shards(rng, tmp_path)
    out = tmp_path / "out"
    assert analyze.main([str(tmp_path), "--out", str(out), "--no-plots"]) == 0
    assert sorted(p.name for p in out.glob("*.*") if p.name[0] != ".") == [
        "analysis.csv", "analysis.json"]  # fmt: skip
    assert "esd_grid.png" not in capsys.readouterr().out
    eager = analysis.analyze(load_source(tmp_path)[0], progress=False)
    assert json.loads((out / "analysis.json").read_text())["layers"] == eager.rows
    assert len(eager.rows) == 6


@pytest.mark.parametrize("damage", ["missing shard", "ghost tensor"])
def test_bad_shards_exit_2_with_one_line_and_write_nothing(rng, tmp_path, capsys, damage):
    from mpjax.cli import dispatch

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    write_shards(rng, ckpt)
    if damage == "missing shard":
        (ckpt / "model-00002-of-00002.safetensors").unlink()
        named = "model-00002-of-00002.safetensors"
    else:
        index = json.loads((ckpt / "model.safetensors.index.json").read_text())
        index["weight_map"]["layers.7.ghost.weight"] = "model-00001-of-00002.safetensors"
        (ckpt / "model.safetensors.index.json").write_text(json.dumps(index))
        named = "layers.7.ghost.weight"
    assert dispatch.main(["analyze", str(ckpt), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
