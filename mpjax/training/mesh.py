"""The data-parallel layout: one 1-D device mesh with axis ``"data"``.

Data parallelism has one code path: the batch is sharded along ``"data"``, parameters and
optimizer state are replicated, and XLA inserts the gradient all-reduce (auto axes). One
device is the mesh of size 1, so single-device runs take the same path.
"""

from __future__ import annotations

import jax
from jax.sharding import NamedSharding, PartitionSpec

__all__ = [
    "DATA_AXIS",
    "batch_sharding",
    "make_mesh",
    "replicated",
]

#: Name of the mesh axis the batch is split along.
DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
    """A 1-D ``('data',)`` mesh over the first ``num_devices`` local devices.

    Args:
      num_devices: how many local devices to use; ``None`` for all of them.

    Returns:
      A ``jax.sharding.Mesh`` with one auto axis ``"data"``.

    Raises:
      ValueError: when ``num_devices`` is below 1 or above the local device count.

    Examples:
      >>> make_mesh(1).axis_names, make_mesh(1).size
      (('data',), 1)
    """
    devices = jax.local_devices()
    n = len(devices) if num_devices is None else int(num_devices)
    if not 1 <= n <= len(devices):
        raise ValueError(f"num_devices: {n} requested, {len(devices)} local devices available.")
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
