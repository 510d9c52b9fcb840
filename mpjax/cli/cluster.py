"""The flags that run a command as one of several ``jax.distributed`` processes.

``mpjax prune`` and ``mpjax train`` take ``--num-processes P --process-id I --coordinator
HOST:PORT``: the same command is started ``P`` times (one per host, or several on one
machine), process 0's host serving as coordinator. Without the flags the values come from
the variables JAX itself reads (``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``,
``JAX_COORDINATOR_ADDRESS``); with neither, the command runs as one process.
:func:`init_from_args` checks them, makes sure the coordinator can be reached (JAX's own
client aborts the process, with a C++ stack trace, when it cannot) and calls
``jax.distributed.initialize`` before any other JAX call. See `docs/guide/distributed.md`
for a launch on one machine and on a SLURM cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jax

__all__ = [
    "Cluster",
    "add_cluster_arguments",
    "check_batch",
    "init_from_args",
    "private_out",
]

#: Seconds a process waits for the coordinator (and the coordinator for the others).
DEFAULT_TIMEOUT = 60


@dataclass(frozen=True)
class Cluster:
    """Where this process stands: ``process_id`` of ``num_processes`` (1 and 0 alone)."""

    num_processes: int
    process_id: int
    coordinator: str | None

    @property
    def primary(self) -> bool:
        """Whether this process writes the run's shared outputs (process 0)."""
        return self.process_id == 0


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--num-processes``, ``--process-id``, ``--coordinator`` and ``--init-timeout``."""
    group = parser.add_argument_group("several processes (jax.distributed)")
    group.add_argument(
        "--num-processes",
        type=int,
        default=None,
        help="processes of the run (default $JAX_NUM_PROCESSES, else 1)",
    )
    group.add_argument(
        "--process-id",
        type=int,
        default=None,
        help="this process, 0 .. P-1; 0 hosts the coordinator (default $JAX_PROCESS_ID)",
    )
    group.add_argument(
        "--coordinator",
        default=None,
        help="HOST:PORT of process 0 (default $JAX_COORDINATOR_ADDRESS)",
    )
    group.add_argument("--init-timeout", type=int, default=DEFAULT_TIMEOUT,
                       help=f"seconds to wait for the other processes (default {DEFAULT_TIMEOUT})")  # fmt: skip


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"${name} {value!r}: must be an integer.") from None


def _settings(args: argparse.Namespace) -> Cluster:
    """The flags (or JAX's variables) checked, without touching the network."""
    num = args.num_processes if args.num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    pid = args.process_id if args.process_id is not None else _env_int("JAX_PROCESS_ID")
    coordinator = args.coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    if num is None and pid is None and coordinator is None:
        return Cluster(1, 0, None)
    num = 1 if num is None else num
    if num < 1:
        raise ValueError(f"--num-processes {num}: must be >= 1.")
    pid = 0 if pid is None and num == 1 else pid
    if pid is None or not 0 <= pid < num:
        raise ValueError(f"--process-id {pid}: must lie in 0 .. {num - 1} (--num-processes {num}).")
    if args.init_timeout < 1:
        raise ValueError(f"--init-timeout {args.init_timeout}: must be >= 1 second.")
    if num > 1 and coordinator is None:
        raise ValueError(
            "--coordinator: required with --num-processes > 1; pass HOST:PORT of process 0."
        )
    if coordinator is not None:
        host, _, port = coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--coordinator {coordinator!r}: expected HOST:PORT, e.g. node0:1234.")
    return Cluster(num, pid, coordinator)


def _wait_for(coordinator: str, timeout: float) -> None:
    """Return once ``coordinator`` accepts a TCP connection; ValueError after ``timeout`` s."""
    host, _, port = coordinator.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2):
                return
        except OSError as err:
            if time.monotonic() >= deadline:
                raise ValueError(
                    f"--coordinator {coordinator}: nothing answered within {timeout:.0f} s "
                    f"({err.strerror or err}); start process 0 there first, or check the "
                    "address and --init-timeout."
                ) from None
            time.sleep(0.2)


def _check_free(coordinator: str) -> None:
    """Process 0 serves the coordinator: its port must be free on this host."""
    port = int(coordinator.rpartition(":")[2])
    with socket.socket() as s:
        try:
            s.bind(("", port))
        except OSError as err:
            raise ValueError(
                f"--coordinator {coordinator}: process 0 cannot listen on port {port} "
                f"({err.strerror}); pick a free port."
            ) from None


def init_from_args(args: argparse.Namespace, batch_size: int | None = None) -> Cluster:
    """Check the cluster flags and join the run's processes (``jax.distributed.initialize``).

    Call it before any other JAX call. One process (no flags, no variables, or
    ``--num-processes 1``) initializes nothing.

    Args:
      args: parsed options of :func:`add_cluster_arguments`.
      batch_size: the run's global batch, checked against the processes and devices.

    Returns:
      This process's :class:`Cluster`.

    Raises:
      ValueError: naming the flag: a process id out of range, a count below 1, a missing or
        malformed ``--coordinator``, a coordinator that does not answer within
        ``--init-timeout`` seconds, a port process 0 cannot listen on, or a batch that
        does not split over the processes (:func:`check_batch`).
    """
    cluster = _settings(args)
    if cluster.num_processes == 1:
        return cluster
    if batch_size is not None:  # before the network: a wrong count fails at once
        check_batch(batch_size, cluster.num_processes, cluster.num_processes)
    if jax.distributed.is_initialized():
        return Cluster(jax.process_count(), jax.process_index(), cluster.coordinator)
    if cluster.primary:
        _check_free(cluster.coordinator)
    else:
        _wait_for(cluster.coordinator, args.init_timeout)
    jax.distributed.initialize(
        cluster.coordinator, cluster.num_processes, cluster.process_id,
        initialization_timeout=args.init_timeout,
    )  # fmt: skip
    if batch_size is not None:
        check_batch(batch_size, cluster.num_processes, jax.device_count())
    return cluster


@contextlib.contextmanager
def private_out(args: argparse.Namespace, cluster: Cluster) -> Iterator[None]:
    """Point ``args.out`` of a process other than 0 at a private folder, removed afterwards.

    Every process runs the whole command (the training steps are collective), but only
    process 0 writes ``--out``; the training run itself lives in process 0's folder
    (:func:`mpjax.training.mesh.shared_workdir`).
    """
    if cluster.primary:
        yield
        return
    out, scratch = args.out, tempfile.mkdtemp(prefix=f"mpjax-process{cluster.process_id}-")
    args.out = str(Path(scratch) / "out")
    try:
        yield
    finally:
        args.out = out
        shutil.rmtree(scratch, ignore_errors=True)


def check_batch(batch_size: int, num_processes: int, num_devices: int) -> None:
    """Check that a global batch splits evenly over the processes and their devices.

    Raises:
      ValueError: naming ``--num-processes``.

    Examples:
      >>> check_batch(128, 2, 8)
      >>> check_batch(128, 3, 3)
      Traceback (most recent call last):
      ...
      ValueError: --num-processes 3: the batch of 128 does not split over 3 processes (3 devices); use a count that divides 128.
    """
    if batch_size % num_processes or batch_size % num_devices:
        raise ValueError(
            f"--num-processes {num_processes}: the batch of {batch_size} does not split over "
            f"{num_processes} processes ({num_devices} devices); use a count that divides "
            f"{batch_size}."
        )
