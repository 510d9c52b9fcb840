"""Top-1 accuracy of a model on a labelled image set, sharded over the data mesh."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mpjax.training.images import prepare_images
from mpjax.training.mesh import batch_sharding, make_mesh, replicated
from mpjax.training.progress import Progress

__all__ = [
    "evaluate",
]

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array, bool], jax.Array]


@functools.partial(jax.jit, static_argnums=0)
def _count_correct(apply_fn, params, images, labels, valid):
    logits = apply_fn(params, prepare_images(images), False)
    return jnp.sum((jnp.argmax(logits, -1) == labels) & valid)


def evaluate(
    params: PyTree,
    apply_fn: ApplyFn,
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int = 1000,
    num_devices: int | None = None,
    progress: bool = True,
) -> float:
    """Top-1 accuracy of ``apply_fn(params, ., train=False)`` on ``(images, labels)``.

    Batches are padded to a fixed size (no recompiles; padded rows are not counted) and
    sharded over the data mesh; images go through
    :func:`~mpjax.training.images.prepare_images`.

    Args:
      params: the model parameters (replicated onto the mesh).
      apply_fn: ``apply_fn(params, images, train) -> logits``.
      images: ``[N, H, W]`` or ``[N, H, W, C]`` pixels.
      labels: int ``[N]``.
      batch_size: images per batch (rounded up to a multiple of the device count).
      num_devices: devices of the data mesh; ``None`` for all local ones.
      progress: show progress when the evaluation takes more than a few seconds (a bar on
        a terminal, log lines otherwise; :class:`~mpjax.training.progress.Progress`).

    Returns:
      The fraction of images whose arg-max logit is the label, in ``[0, 1]``.

    Raises:
      ValueError: when ``images`` and ``labels`` differ in length or are empty.
    """
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"labels: {len(labels)} labels for {len(images)} images (need > 0).")
    mesh = make_mesh(num_devices)
    bs = -(-min(batch_size, len(images)) // mesh.size) * mesh.size
    params = jax.device_put(params, replicated(mesh))
    shard = batch_sharding(mesh)
    correct = 0
    bar = Progress(len(images), "evaluate", unit="image", enabled=progress)
    for start in range(0, len(images), bs):
        x, y = np.asarray(images[start : start + bs]), np.asarray(labels[start : start + bs])
        valid = np.arange(bs) < len(x)
        pad = bs - len(x)
        x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
        y = np.concatenate([y, np.zeros(pad, y.dtype)]) if pad else y
        batch = jax.device_put((x, y, valid), shard)
        correct += int(_count_correct(apply_fn, params, *batch))
        bar.update(len(y) - pad)
    bar.close()
    return correct / len(images)
