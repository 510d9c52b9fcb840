"""OUT/distill: the same job resumes, another job's folder is replaced only with --overwrite,
and a folder mpjax did not write is never deleted."""

import dataclasses
import json
import os

import pytest

from mpjax.pipeline import PruneJob, run, workdir


def _job(out, **kw):
    fields = dict(source="vit-ti16", out=str(out), method="magnitude", pattern="2:4",
                  data="fashion-mnist", distill_steps=4, progress=False)  # fmt: skip
    return PruneJob(**{**fields, **kw})


def test_a_foreign_distill_folder_is_refused_and_kept_even_with_overwrite(tmp_path):
    (tmp_path / "distill").mkdir()
    (tmp_path / "distill" / "notes.txt").write_text("keep")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match=r"--out: .*distill holds files that mpjax prune did "
                                             r"not write.*--overwrite never deletes"):  # fmt: skip
            workdir.claim(tmp_path, _job(tmp_path, overwrite=overwrite))
    assert (tmp_path / "distill" / "notes.txt").read_text() == "keep"
    assert not (tmp_path / workdir.STAMP).exists()


def test_the_job_refuses_a_foreign_distill_folder_before_any_work(tmp_path):
    # `mkdir -p D/distill && echo keep > D/distill/notes.txt && mpjax prune ... --out D`
    # used to delete notes.txt (shutil.rmtree when the stamp was missing)
    (tmp_path / "distill").mkdir()
    (tmp_path / "distill" / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="distill holds files that mpjax prune did not write"):
        run(_job(tmp_path, source="shipped"))
    assert (tmp_path / "distill" / "notes.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["distill"]  # nothing ran


def test_the_same_job_resumes_its_folder(tmp_path):
    job = _job(tmp_path)
    assert workdir.check(tmp_path, job) == "new"
    folder, action = workdir.claim(tmp_path, job)
    assert action == "new" and folder == tmp_path / "distill"
    folder.mkdir()
    (folder / "checkpoint-step-2").write_text("an interrupted run")
    # options that do not change the distillation may differ: still the same run
    again = dataclasses.replace(job, progress=True, eval_images=10, out=str(tmp_path / "."))
    assert workdir.claim(tmp_path, again) == (folder, "resume")
    assert (folder / "checkpoint-step-2").exists()


def test_another_jobs_folder_needs_overwrite(tmp_path):
    workdir.claim(tmp_path, _job(tmp_path, seed=1))
    (tmp_path / "distill").mkdir()
    (tmp_path / "distill" / "metrics.jsonl").write_text("{}\n")
    other = _job(tmp_path, seed=2, distill_steps=8)
    with pytest.raises(ValueError, match=r"another prune job \(it differs in distill_steps, "
                                         r"seed\); pass --overwrite"):  # fmt: skip
        workdir.check(tmp_path, other)
    assert (tmp_path / "distill" / "metrics.jsonl").exists()
    replaced = dataclasses.replace(other, overwrite=True)
    assert workdir.claim(tmp_path, replaced) == (tmp_path / "distill", "replace")
    assert not (tmp_path / "distill").exists()  # ours by the stamp: replaced
    assert workdir.check(tmp_path, other) == "new"  # the stamp is now the new job's


def test_an_empty_folder_is_simply_used(tmp_path):
    (tmp_path / "distill").mkdir()
    assert workdir.check(tmp_path, _job(tmp_path)) == "new"
    workdir.claim(tmp_path, _job(tmp_path, seed=5))
    assert workdir.check(tmp_path, _job(tmp_path)) == "new"  # another job, but nothing to lose


def test_links_files_and_foreign_stamps_are_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(target, out / "distill")
    with pytest.raises(ValueError, match="distill is a symbolic link"):
        workdir.check(out, _job(out, overwrite=True))
    (out / "distill").unlink()
    (out / "distill").write_text("a file")
    with pytest.raises(ValueError, match="distill is a file"):
        workdir.check(out, _job(out))
    (out / "distill").unlink()
    (out / workdir.STAMP).write_text("not json")
    with pytest.raises(ValueError, match=f"{workdir.STAMP} was not written by mpjax prune"):
        workdir.claim(out, _job(out))
    assert (out / workdir.STAMP).read_text() == "not json"


def test_the_stamp_of_older_mpjax_is_recognised(tmp_path):
    job = _job(tmp_path)
    (tmp_path / workdir.STAMP).write_text(json.dumps(dataclasses.asdict(job), sort_keys=True))
    (tmp_path / "distill").mkdir()
    (tmp_path / "distill" / "metrics.jsonl").write_text("{}\n")
    assert workdir.check(tmp_path, dataclasses.replace(job, overwrite=False)) == "resume"
