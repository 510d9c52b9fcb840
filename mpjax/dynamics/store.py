"""On-disk dataset of a dynamics run: per-epoch ``.npz`` records, a JSONL index, a checkpoint.

Layout of a run directory::

    config.json              the resolved DynamicsConfig (resume checks it)
    epochs/epoch_00012.npz   records of epoch 12 (arrays with a leading member axis)
    index.jsonl              one line per recorded epoch: epoch, file, scalar summary
    checkpoint.npz           params + optimizer state after the last finished epoch

Every file is written to a temporary name in the same directory and moved into place with
``os.replace`` (:func:`mpjax.npz.atomic_write`, atomic on POSIX), so a crash never leaves a half-written file under a final
name. Per epoch the order is: records, then checkpoint (the commit point), then index. On
resume the index is rebuilt from the records of epochs ``0..c`` where ``c`` is the
checkpoint's epoch, so an interrupted run loses at most the epoch in progress and never
gains a duplicate or a gap.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from mpjax import npz

PyTree = Any


def write_json(path: str, obj: Any) -> None:
    """Write ``obj`` as indented JSON with sorted keys, atomically."""
    npz.atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, sort_keys=True).encode()))


def _read_record(path: str) -> dict[str, np.ndarray]:
    """All arrays of a record or checkpoint file; an unreadable file says how to recover."""
    try:
        return npz.read_npz(path, what="a record file")
    except ValueError as e:
        raise ValueError(f"{e} Delete it and --resume.") from e


def epoch_file(epoch: int) -> str:
    """Relative path of an epoch's record file."""
    return os.path.join("epochs", f"epoch_{epoch:05d}.npz")


def write_epoch(
    run_dir: str, epoch: int, arrays: Mapping[str, np.ndarray], summary: Mapping[str, Any]
) -> None:
    """Write the records of one epoch; the summary is stored inside as JSON too."""
    data = dict(arrays)
    data["epoch"] = np.asarray(epoch)
    data["summary_json"] = np.asarray(json.dumps({"epoch": epoch, **summary}, sort_keys=True))
    npz.write_npz(os.path.join(run_dir, epoch_file(epoch)), data)


def read_epoch(run_dir: str, epoch: int) -> dict[str, np.ndarray]:
    """The records of one epoch."""
    return _read_record(os.path.join(run_dir, epoch_file(epoch)))


def write_index(run_dir: str, entries: list[dict[str, Any]]) -> None:
    """Rewrite ``index.jsonl`` atomically from its entries (sorted, unique epochs)."""
    epochs = [e["epoch"] for e in entries]
    if epochs != sorted(set(epochs)):
        raise ValueError(f"{run_dir}/index.jsonl: epochs {epochs} must be increasing and unique")
    text = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries)
    npz.atomic_write(os.path.join(run_dir, "index.jsonl"), lambda f: f.write(text.encode()))


def read_index(run_dir: str) -> list[dict[str, Any]]:
    """The entries of ``index.jsonl`` (empty when the run has none yet)."""
    path = os.path.join(run_dir, "index.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def rebuild_index(run_dir: str, last_epoch: int) -> list[dict[str, Any]]:
    """Index entries of epochs ``0..last_epoch`` read back from their record files.

    Raises:
      ValueError: when a record file of a committed epoch is missing (a gap).
    """
    entries = []
    for epoch in range(last_epoch + 1):
        path = os.path.join(run_dir, epoch_file(epoch))
        if not os.path.exists(path):
            raise ValueError(
                f"{path}: missing record of committed epoch {epoch}; the run "
                "directory is damaged, start a new --out"
            )
        rec = _read_record(path)
        entries.append({**json.loads(str(rec["summary_json"])), "file": epoch_file(epoch)})
    return entries


def save_checkpoint(run_dir: str, epoch: int, state: PyTree) -> None:
    """Save a pytree of arrays (params, optimizer state) with the epoch it follows."""
    leaves = jax.tree_util.tree_leaves(state)
    arrays = {f"leaf_{i:05d}": np.asarray(x) for i, x in enumerate(leaves)}
    arrays["epoch"] = np.asarray(epoch)
    arrays["n_leaves"] = np.asarray(len(leaves))
    npz.write_npz(os.path.join(run_dir, "checkpoint.npz"), arrays)


def load_checkpoint(run_dir: str, target: PyTree) -> tuple[int, PyTree] | None:
    """Restore the checkpoint against an abstract target (e.g. from ``jax.eval_shape``).

    Returns:
      ``(epoch, state)`` or ``None`` when no checkpoint exists.

    Raises:
      ValueError: when the stored leaves do not match the target's structure or shapes.
    """
    path = os.path.join(run_dir, "checkpoint.npz")
    if not os.path.exists(path):
        return None
    data = _read_record(path)
    leaves, treedef = jax.tree_util.tree_flatten(target)
    if int(data["n_leaves"]) != len(leaves):
        raise ValueError(
            f"{path}: {int(data['n_leaves'])} leaves stored, the config needs "
            f"{len(leaves)}; the config changed, start a new --out"
        )
    restored = []
    for i, t in enumerate(leaves):
        x = data[f"leaf_{i:05d}"]
        if tuple(x.shape) != tuple(t.shape):
            raise ValueError(
                f"{path}: leaf {i} has shape {x.shape}, expected {t.shape}; "
                "the config changed, start a new --out"
            )
        restored.append(x.astype(t.dtype))
    return int(data["epoch"]), jax.tree_util.tree_unflatten(treedef, restored)
