"""The comparison grid of ``mpjax bench quality``: settings, resumable rows, one tiny run."""

import json

import pytest
from vit_fixtures import write_idx_and_vit

from mpjax.pipeline import compare, oneshot


def _grid(**kw):
    base = dict(models=("m",), methods=("magnitude", "seb", "ser", "cast", "wanda"),
                targets=(("unstructured", 0.5), ("2:4", 0.5), ("8:16", 0.5)))  # fmt: skip
    return compare.Grid(**{**base, **kw})


def test_settings_follow_the_method_table():
    got = compare.settings(_grid())
    assert ("ser", "2:4", 0.5, 0) not in got and ("cast", "unstructured", 0.5, 0) not in got
    assert ("seb", "2:4", 0.5, 0) not in got  # seb's N:M form is magnitude's
    assert ("cast", "8:16", 0.5, 0) in got and ("wanda", "8:16", 0.5, 0) in got
    tome = [s for s in got if s[3]]
    assert {s[1] for s in tome} == {"2:4"} and {s[0] for s in tome} == {"magnitude", "cast",
                                                                        "wanda"}
    assert not [s for s in compare.settings(_grid(tome=0)) if s[3]]


def test_row_store_appends_atomically_and_resumes(tmp_path):
    path = tmp_path / "rows.json"
    store = compare.RowStore(path)
    row = dict(model="m", method="wanda", pattern="2:4", sparsity=0.5, tome=0,
               reconstruct="off", budget=None, calib_images=8, steps=0, seed=1, acc=0.5)
    store.add(row)
    assert json.loads(path.read_text()) == [row] and not (tmp_path / "rows.json.tmp").exists()
    again = compare.RowStore(path)
    assert compare.row_key(row) in again
    assert compare.row_key({**row, "seed": 2}) not in again
    path.write_text('{"not": "a list"}')
    with pytest.raises(ValueError, match="--json"):
        compare.RowStore(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid")
    return root, str(write_idx_and_vit(root))


def test_grid_rows_and_resume_after_an_interruption(tiny, tmp_path, monkeypatch):
    root, src = tiny
    grid = compare.Grid(models=(src,), methods=("magnitude", "wanda"), targets=(("2:4", 0.5),),
                        reconstruct=("off", "parallel"), seeds=(0,), tome=0, calib_images=16,
                        data_dir=str(root))  # fmt: skip
    path = tmp_path / "rows.json"
    rows = compare.run_grid(grid, compare.RowStore(path), say=lambda _: None).rows
    assert len(rows) == 2 * 2 and json.loads(path.read_text()) == rows
    for r in rows:
        assert set(compare.KEY_FIELDS) <= set(r) and r["calib_images"] == 16
        assert 0 <= r["acc_pruned"] <= 1 and r["acc_distilled"] == r["acc_pruned"]
        if r["reconstruct"] == "off":
            assert r["error_after"] == r["error_before"] > 0
        else:
            assert r["error_after"] < r["error_before"]
    # the refit row starts from the same masks as the one-shot row of its setting
    off = {(r["method"], r["pattern"]): r for r in rows if r["reconstruct"] == "off"}
    for r in rows:
        if r["reconstruct"] == "parallel":
            assert r["error_before"] == pytest.approx(off[r["method"], r["pattern"]]["error_after"])
    # interrupted after 3 rows: a rerun computes the missing setting only
    path.write_text(json.dumps(rows[:-1]))
    calls = []
    real = oneshot.prune_one_shot
    monkeypatch.setattr(oneshot, "prune_one_shot",
                        lambda *a, **k: calls.append(a[2:4]) or real(*a, **k))  # fmt: skip
    resumed = compare.run_grid(grid, compare.RowStore(path), say=lambda _: None).rows
    assert calls == [tuple(rows[-1][k] for k in ("method", "pattern"))]
    assert [compare.row_key(r) for r in resumed] == [compare.row_key(r) for r in rows]
    compare.run_grid(grid, compare.RowStore(path), say=lambda _: None)
    assert len(calls) == 1  # nothing left to do
