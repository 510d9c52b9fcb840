"""The data-parallel layout: one 1-D device mesh with axis ``"data"``, on one or many processes.

Data parallelism has one code path: the batch is sharded along ``"data"``, parameters and
optimizer state are replicated, and XLA inserts the gradient all-reduce (auto axes). One
device is the mesh of size 1, so single-device runs take the same path.

Several processes (``jax.distributed``, one per host or several on one machine; see
:mod:`mpjax.cli.cluster`) share one *global* mesh over all their devices, process 0's first.
A global batch of ``B`` rows is then split into ``P`` contiguous blocks of ``B / P`` rows:
process ``p`` holds rows ``[p B / P, (p + 1) B / P)`` (:func:`process_rows`), reads only
those and assembles the global array from them (:func:`global_batch`), so the global batch
and hence every step are the same for any number of processes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

__all__ = [
    "DATA_AXIS",
    "batch_sharding",
    "check_batch_size",
    "global_batch",
    "local_copy",
    "make_mesh",
    "process_rows",
    "replicated",
    "shared_workdir",
]

#: Name of the mesh axis the batch is split along.
DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None, across_processes: bool = False) -> jax.sharding.Mesh:
    """A 1-D ``('data',)`` mesh over the first ``num_devices`` local (or global) devices.

    Args:
      num_devices: how many devices to use; ``None`` for all of them. Across processes it
        must be ``None`` or the global device count (every process takes part).
      across_processes: span the devices of every ``jax.distributed`` process (the same as
        the local ones in a single process).

    Returns:
      A ``jax.sharding.Mesh`` with one auto axis ``"data"``.

    Raises:
      ValueError: when ``num_devices`` is below 1 or above the device count, or leaves out
        some processes' devices.

    Examples:
      >>> make_mesh(1).axis_names, make_mesh(1).size
      (('data',), 1)
    """
    devices = jax.devices() if across_processes else jax.local_devices()
    n = len(devices) if num_devices is None else int(num_devices)
    if not 1 <= n <= len(devices):
        raise ValueError(f"num_devices: {n} requested, {len(devices)} local devices available.")
    if across_processes and jax.process_count() > 1 and n != len(devices):
        raise ValueError(
            f"num_devices: {n} of the {len(devices)} devices of {jax.process_count()} "
            "processes; with several processes every device takes part: leave it unset."
        )
    # Auto axes: XLA propagates the batch sharding and inserts the gradient all-reduce.
    return jax.make_mesh(
        (n,), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices[:n]
    )


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    """The sharding of parameters and optimizer state: a full copy on every device.

    Args:
      mesh: a mesh from :func:`make_mesh`.

    Returns:
      ``NamedSharding(mesh, PartitionSpec())``.
    """
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """The sharding of a batch: split along its leading axis over ``"data"``.

    Args:
      mesh: a mesh from :func:`make_mesh`; the batch size must be a multiple of its size.

    Returns:
      ``NamedSharding(mesh, PartitionSpec("data"))``.
    """
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: jax.sharding.Mesh) -> None:
    """Check that a global batch splits evenly over the mesh's devices and processes.

    Raises:
      ValueError: naming ``batch_size`` when ``batch_size % devices`` (or
        ``% processes``) is not zero.
    """
    processes = len({d.process_index for d in mesh.devices.flat})
    if batch_size % mesh.size or batch_size % processes:
        where = f"the {mesh.size} devices" + (f" of {processes} processes" if processes > 1 else "")
        raise ValueError(
            f"batch_size: {batch_size} is not divisible by {where}; pick a multiple of "
            f"{mesh.size} or set num_devices."
        )


def process_rows(sharding: NamedSharding, batch_size: int) -> slice:
    """The rows of a ``batch_size`` global batch that this process's devices hold.

    Args:
      sharding: a :func:`batch_sharding`.
      batch_size: the global batch size (a multiple of the mesh size).

    Returns:
      ``slice(start, stop)``: one contiguous block (``[p B / P, (p + 1) B / P)`` for
      process ``p`` of ``P`` with equally many devices each); the whole batch in one process.

    Examples:
      >>> process_rows(batch_sharding(make_mesh(1)), 8)
      slice(0, 8, None)
    """
    index = sharding.addressable_devices_indices_map((batch_size,))
    spans = sorted({(s[0].start or 0, batch_size if s[0].stop is None else s[0].stop)
                    for s in index.values()})  # fmt: skip
    for (_, stop), (start, _) in zip(spans, spans[1:], strict=False):
        if stop != start:  # a mesh whose devices interleave processes: not data parallel here
            raise ValueError(f"sharding: this process holds rows {spans}, not one block.")
    return slice(spans[0][0], spans[-1][1])


def global_batch(local: dict[str, np.ndarray], sharding: NamedSharding, batch_size: int) -> dict:
    """A global batch sharded by ``sharding`` from this process's rows of it.

    Args:
      local: ``{name: rows}`` with the :func:`process_rows` block of every field.
      sharding: a :func:`batch_sharding`.
      batch_size: the global batch size.

    Returns:
      ``{name: jax.Array [batch_size, ...]}`` (in one process, the batch put on the mesh).
    """
    return {
        k: jax.make_array_from_process_local_data(
            sharding, np.asarray(x), (batch_size, *x.shape[1:])
        )
        for k, x in local.items()
    }


def shared_workdir(workdir: str | os.PathLike) -> Path:
    """Process 0's ``workdir`` on every process: a run has one folder (on a shared file system).

    Args:
      workdir: this process's idea of the run's folder (at most 4096 bytes as a path).

    Returns:
      ``Path(workdir)`` in one process; otherwise process 0's absolute path, broadcast.
    """
    if jax.process_count() == 1:
        return Path(workdir)
    raw = np.zeros(4096, np.uint8)
    text = str(Path(workdir).absolute()).encode()
    raw[: len(text)] = np.frombuffer(text, np.uint8)
    raw = np.asarray(multihost_utils.broadcast_one_to_all(raw))
    return Path(raw.tobytes().rstrip(b"\0").decode())


def local_copy(tree: Any) -> Any:
    """Replicated global arrays as this process's copy on its first device.

    What a process hands to code that runs on its own devices (evaluation, saving) after a
    run across processes; in one process ``tree`` is returned unchanged.
    """
    if jax.process_count() == 1:
        return tree
    return jax.tree.map(lambda x: x.addressable_data(0), tree)
