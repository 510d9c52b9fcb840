"""``--out`` checks: refused before any work, nothing created on refusal, own runs accepted."""

import json
import os

import pytest

from mpjax.cli import output


def _tree(root):
    """Every path under ``root`` with its bytes (files) or None (directories, links)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            found[p] = None if os.path.isdir(p) or os.path.islink(p) else open(p, "rb").read()
    return found


def test_new_directory_is_created_with_the_marker(tmp_path):
    out = output.prepare_out(tmp_path / "a" / "b", command="analyze")
    assert out == (tmp_path / "a" / "b").resolve() and out.is_dir()
    marker = json.loads((out / output.MARKER).read_text())
    assert marker["command"] == "analyze" and output.owned(out, "analyze")
    assert not output.owned(out, "prune") and not output.owned(tmp_path)


@pytest.mark.parametrize("case", ["file", "under_file", "symlink", "foreign", "other_command"])
def test_bad_out_is_refused_naming_the_flag_and_creates_nothing(tmp_path, case):
    (tmp_path / "f.txt").write_text("keep")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("keep")
    (tmp_path / "prev").mkdir()
    (tmp_path / "prev" / output.MARKER).write_text(json.dumps({"command": "prune"}))
    (tmp_path / "prev" / "report.md").write_text("old")
    os.symlink(tmp_path / "d", tmp_path / "link")
    path = {
        "file": tmp_path / "f.txt",
        "under_file": tmp_path / "f.txt" / "sub" / "out",
        "symlink": tmp_path / "link",
        "foreign": tmp_path / "d",
        "other_command": tmp_path / "prev",
    }[case]
    before = _tree(tmp_path)
    with pytest.raises(ValueError, match="^--out ") as err:
        output.prepare_out(path, command="analyze")
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert _tree(tmp_path) == before


def test_unwritable_parent_is_refused(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.geteuid() == 0:  # root writes anywhere: let os.access say what a user would see
        real = os.access
        monkeypatch.setattr(output.os, "access", lambda p, m: real(p, m) and p != locked)
    try:
        with pytest.raises(ValueError, match="^--out .*not writable"):
            output.prepare_out(locked / "new" / "out", command="prune")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_own_earlier_run_and_overwrite_are_accepted(tmp_path):
    out = output.prepare_out(tmp_path / "run", command="prune")
    (out / "report.md").write_text("first run")
    assert output.prepare_out(tmp_path / "run", command="prune") == out
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    kept = output.prepare_out(tmp_path / "mine", command="prune", overwrite=True)
    assert (kept / "notes.txt").read_text() == "keep" and output.owned(kept, "prune")
    # a run recognised by its own files (dynamics' config.json) is accepted and marked
    (tmp_path / "dyn").mkdir()
    (tmp_path / "dyn" / "config.json").write_text("{}")
    with pytest.raises(ValueError):
        output.prepare_out(tmp_path / "dyn", command="dynamics")
    got = output.prepare_out(tmp_path / "dyn", command="dynamics",
                             own=lambda p: (p / "config.json").exists())  # fmt: skip
    assert output.owned(got, "dynamics")


def test_empty_directory_is_accepted(tmp_path):
    (tmp_path / "empty").mkdir()
    assert output.owned(output.prepare_out(tmp_path / "empty", command="demo"), "demo")


def test_cleanup_if_empty_removes_only_what_it_created(tmp_path):
    output.prepare_out(tmp_path / "x" / "y" / "z", command="prune")
    assert output.cleanup_if_empty(tmp_path / "x" / "y" / "z")
    assert list(tmp_path.iterdir()) == []
    # a directory the user made stays; only our marker goes
    (tmp_path / "user").mkdir()
    output.prepare_out(tmp_path / "user", command="prune")
    assert not output.cleanup_if_empty(tmp_path / "user")
    assert list((tmp_path / "user").iterdir()) == []
    # a run that wrote something keeps it all
    out = output.prepare_out(tmp_path / "w", command="prune")
    (out / "report.md").write_text("x")
    assert not output.cleanup_if_empty(out)
    assert sorted(p.name for p in out.iterdir()) == [output.MARKER, "report.md"]
