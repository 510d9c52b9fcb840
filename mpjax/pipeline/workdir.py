"""The prune job's distillation folder ``OUT/distill``: resumed, replaced or refused, never lost.

:func:`mpjax.training.distill` checkpoints into ``OUT/distill`` and resumes from it. Beside
the folder the job writes the stamp ``OUT/distill.job.json`` (:data:`STAMP`): the options of
the job that distilled there (:func:`identity`). Before any costly work :func:`check` decides:

* no ``distill/`` (or an empty one): a new distillation;
* our stamp with the same options: the earlier, maybe interrupted, run is **resumed**;
* our stamp with other options: refused, unless ``overwrite`` (``--overwrite``), which
  replaces the folder, since the stamp proves mpjax wrote it;
* a ``distill/`` without our stamp, a symbolic link, a file, or a stamp that is not ours:
  refused, even with ``overwrite``. A folder mpjax did not write is never deleted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

__all__ = [
    "STAMP",
    "check",
    "claim",
    "identity",
]

#: Name of the stamp beside ``OUT/distill``.
STAMP = "distill.job.json"
#: ``schema`` field of the stamp.
SCHEMA = "mpjax-prune-distill"
#: Job options that do not change what is distilled: a rerun differing only in them resumes.
VOLATILE = ("out", "progress", "overwrite", "eval_images")
#: Fields every PruneJob stamp has (older mpjax wrote the bare job dict, without ``schema``).
_JOB_KEYS = {"source", "method", "pattern", "distill_steps"}


def identity(job: Any) -> dict[str, Any]:
    """The options of ``job`` (a :class:`~mpjax.pipeline.PruneJob`) that make its distillation."""
    return {k: v for k, v in sorted(dataclasses.asdict(job).items()) if k not in VOLATILE}


def _stamped(stamp: Path) -> dict[str, Any] | None:
    """The job identity in our stamp; ``None`` if there is none; ValueError if it is not ours."""
    if not stamp.exists() and not stamp.is_symlink():
        return None
    foreign = ValueError(
        f"--out: {stamp} was not written by mpjax prune; move it away or choose another --out."
    )
    if stamp.is_symlink() or not stamp.is_file():
        raise foreign
    try:
        found = json.loads(stamp.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        raise foreign from None
    if (
        isinstance(found, dict)
        and found.get("schema") == SCHEMA
        and isinstance(found.get("job"), dict)
    ):
        return found["job"]
    if isinstance(found, dict) and "schema" not in found and _JOB_KEYS <= set(found):
        return {k: v for k, v in sorted(found.items()) if k not in VOLATILE}  # older mpjax
    raise foreign


def check(out: str | os.PathLike, job: Any) -> str:
    """What the job may do with ``out/distill``: ``"new"``, ``"resume"`` or ``"replace"``.

    Changes nothing on disk; call it before any costly work.

    Raises:
      ValueError: naming the path, when the folder is not ours or is another job's without
        ``job.overwrite``.
    """
    out = Path(out)
    workdir, stamp = out / "distill", out / STAMP
    if workdir.is_symlink():
        raise ValueError(
            f"--out: {workdir} is a symbolic link; mpjax prune writes its "
            "distillation there itself: remove the link or choose another --out."
        )
    if workdir.exists() and not workdir.is_dir():
        raise ValueError(f"--out: {workdir} is a file that mpjax prune did not write; move it "
                         "away or choose another --out.")  # fmt: skip
    empty = not workdir.exists() or not any(workdir.iterdir())
    stamped = _stamped(stamp)
    if stamped is None:
        if empty:
            return "new"
        raise ValueError(f"--out: {workdir} holds files that mpjax prune did not write (no {STAMP} "
                         "beside it); move them away or choose another --out (--overwrite never "
                         "deletes what mpjax did not write).")  # fmt: skip
    if stamped == identity(job):
        return "new" if empty else "resume"
    if empty:
        return "new"
    if not getattr(job, "overwrite", False):
        changed = sorted(k for k in set(stamped) | set(identity(job))
                         if stamped.get(k) != identity(job).get(k))  # fmt: skip
        raise ValueError(f"--out: {workdir} holds the distillation of another prune job (it "
                         f"differs in {', '.join(changed)}); pass --overwrite to replace it or "
                         "choose another --out.")  # fmt: skip
    return "replace"


def claim(out: str | os.PathLike, job: Any) -> tuple[Path, str]:
    """Make ``out/distill`` ready for ``job`` and stamp it: ``(workdir, what was done)``.

    Runs :func:`check` again; ``"replace"`` removes the other job's folder (ours, by its stamp).
    The stamp is written atomically before the distillation starts, so an interrupted run
    is recognised and resumed by the next run of the same job.

    Raises:
      ValueError: what :func:`check` raises.
    """
    out = Path(out)
    workdir, stamp = out / "distill", out / STAMP
    action = check(out, job)
    if action == "replace":
        shutil.rmtree(workdir)
    tmp = out / f".{STAMP}.tmp"
    tmp.write_text(json.dumps({"schema": SCHEMA, "job": identity(job)}, indent=1))
    os.replace(tmp, stamp)
    return workdir, action
