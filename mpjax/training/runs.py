"""The bookkeeping of a resumable run: its fingerprint, data order, resume, metrics log and
the guard against non-finite losses.

A run lives in a ``workdir``: ``checkpoints/`` (atomic orbax checkpoints,
:class:`~mpjax.checkpoint.TrainCheckpointer`), ``metrics.jsonl`` (one JSON row per logged
step) and ``summary.json``. Resuming reproduces the uninterrupted run bit for bit because
the data of step ``t`` is a pure function of ``(seed, t)`` (:func:`stream_batches`), the
random keys are ``fold_in(rng, t)`` and the whole optimizer state is in the checkpoint; the
metrics rows the interrupted run logged after its last checkpoint are dropped
(:func:`truncate_metrics`), so a resumed run logs each step once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mpjax import data as data_lib
from mpjax.checkpoint import TrainCheckpointer
from mpjax.training.config import DistillConfig
from mpjax.tree import flatten

__all__ = [
    "NonFiniteGuard",
    "resume",
    "run_fingerprint",
    "stream_batches",
    "truncate_metrics",
]

PyTree = Any

#: Config fields that may change between an interrupted run and its resumption.
_VOLATILE = ("stop_after_steps", "progress", "log_every", "eval_batch_size", "checkpoint_every")


def run_fingerprint(
    config: DistillConfig, num_steps: int, masks: PyTree | None, teacher: bool
) -> str:
    """SHA-256 of what makes a run, so that a resume never continues another run.

    Args:
      config: the settings; the logging / stopping fields (``_VOLATILE``) are left out.
      num_steps: length of the run.
      masks: the frozen masks (their paths and bits) or None.
      teacher: whether the run distills from a teacher.

    Returns:
      The hex digest.
    """
    h = hashlib.sha256()
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in _VOLATILE}
    h.update(json.dumps([settings, num_steps, teacher], sort_keys=True).encode())
    for path, m in ({} if masks is None else flatten(masks)).items():
        h.update(path.encode() + np.packbits(np.asarray(m, bool)).tobytes())
    return h.hexdigest()


def stream_batches(
    images: np.ndarray,
    labels: np.ndarray,
    config: DistillConfig,
    start: int,
    stop: int,
    steps_per_epoch: int,
) -> Iterator[tuple[int, tuple[np.ndarray, np.ndarray]]]:
    """``(step, (x, y))`` for steps ``start .. stop - 1``.

    Step ``t`` is batch ``t % steps_per_epoch`` of epoch ``t // steps_per_epoch``, fixed by
    ``(seed, epoch, batch)`` (:func:`mpjax.data.batches`): a pure function of
    ``(seed, t)``, so a resumed run sees the same data as an uninterrupted one.
    """
    step = start
    while step < stop:
        epoch, first = divmod(step, steps_per_epoch)
        for xy in data_lib.batches(
            images, labels, config.batch_size, config.seed, epoch, start_batch=first
        ):
            yield step, xy
            step += 1
            if step >= stop:
                return


def resume(ckpt: TrainCheckpointer, state: PyTree, fingerprint: str, workdir: Path) -> PyTree:
    """``state`` restored from ``ckpt``'s latest step (if any), the teacher kept as given.

    Prints ``resuming from step k (DIR)`` to stderr when it restores.

    Raises:
      ValueError: when the checkpoint belongs to another run (other fingerprint).
    """
    step = ckpt.latest_step()
    if step is None:
        return state
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        state.replace(teacher_params=None),
    )
    restored, meta = ckpt.restore(abstract)
    if meta.get("fingerprint") != fingerprint:
        raise ValueError(
            f"workdir: {workdir} holds a run with other masks, settings or length; "
            "use a fresh workdir (or delete its checkpoints/) to start a new run."
        )
    print(f"resuming from step {step} ({ckpt.directory / str(step)})", file=sys.stderr, flush=True)
    return restored.replace(teacher_params=state.teacher_params)


def truncate_metrics(path: Path, step: int) -> None:
    """Drop the rows of ``path`` (JSON lines) logged after ``step``, atomically.

    An interrupted run may have logged steps after its last checkpoint (and a half-written
    last line); the resumed run logs them again, so they go. The file is rewritten into a
    temporary file beside it and renamed over it, so a kill leaves the old or the new one.

    Args:
      path: the ``metrics.jsonl`` of a run (nothing happens when it does not exist).
      step: the step the run resumes from (0: a fresh start keeps no row).
    """
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    kept = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by the kill
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
            kept.append(line)
    if kept == lines:
        return
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@jax.jit
def _all_finite(tree: PyTree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


class NonFiniteGuard:
    """Stops a run whose loss (or parameters) became NaN or infinite, before it saves them.

    The loop hands every step's loss to :meth:`record` (a device scalar: no sync) and calls
    :meth:`check` before it logs or saves; :meth:`check` fetches the pending losses at once
    and raises at the first non-finite one, naming the step and the last good checkpoint.

    Args:
      ckpt: the run's checkpointer (for the message: its latest step is the last good one).
    """

    def __init__(self, ckpt: TrainCheckpointer):
        self.ckpt = ckpt
        self._pending: list[tuple[int, jax.Array]] = []

    def record(self, step: int, loss: jax.Array) -> None:
        """Remember the loss of ``step`` (1-based, as in ``metrics.jsonl``)."""
        self._pending.append((step, loss))

    def check(self, params: PyTree | None = None) -> None:
        """Raise if a pending loss (or, when given, a parameter) is not finite.

        Raises:
          ValueError: ``loss became NaN at step k; last good checkpoint kept at DIR``.
        """
        pending, self._pending = self._pending, []
        values = jax.device_get([loss for _, loss in pending])
        for (step, _), value in zip(pending, values, strict=True):
            if not np.isfinite(value):
                self._fail(f"loss became {float(value)} at step {step}".replace("nan", "NaN"))
        if params is not None and not bool(_all_finite(params)):
            step = pending[-1][0] if pending else "?"
            self._fail(f"parameters became non-finite at step {step}")

    def _fail(self, what: str) -> None:
        last = self.ckpt.latest_step()
        kept = (
            f"last good checkpoint kept at {self.ckpt.directory / str(last)}"
            if last is not None
            else f"no checkpoint was saved before it ({self.ckpt.directory})"
        )
        raise ValueError(
            f"{what}; {kept} (lower the learning rate, or check the data and the weights "
            "for NaN/Inf)."
        )
