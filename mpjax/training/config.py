"""The settings of a training or distillation run, and the optimizer they describe.

:class:`DistillConfig` is flax's config object with commented fields; :func:`make_optimizer`
turns it into AdamW on a warmup + cosine schedule (:func:`make_schedule`), wrapped in
:func:`~mpjax.training.masked.masked_updates` when the run has frozen pruning masks.
The loss defaults are the paper's distillation setting: see `docs/method/distillation.md`.

References:
  [P26] Berlyand et al., arXiv 2606.02608: distillation with a frozen mask, a = 0.5,
  tau = 2, label smoothing 0.1.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import optax

from mpjax.training.masked import masked_updates

__all__ = [
    "DistillConfig",
    "checkpoint_interval",
    "make_optimizer",
    "make_schedule",
]

PyTree = Any


@dataclasses.dataclass
class DistillConfig:
    """Training / distillation hyper-parameters (defaults: the paper's distillation loss).

    Without a teacher the same config trains from labels alone (``alpha`` is then ignored).
    """

    # Optimizer and schedule: AdamW, linear warmup then cosine decay.
    learning_rate: float = 1e-3  # peak learning rate of the warmup + cosine schedule
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    warmup_steps: int = 100  # linear warmup from 0 to learning_rate
    end_lr_fraction: float = 0.0  # cosine decays to learning_rate * end_lr_fraction
    grad_clip: float | None = 1.0  # global-norm gradient clipping; None disables it
    # Length of the run.
    batch_size: int = 128  # global batch, split over the devices (must divide evenly)
    num_epochs: float = 1.0  # length of the run when num_steps is None
    num_steps: int | None = None  # total optimizer steps (overrides num_epochs)
    # Loss (see mpjax.training.kd.kd_loss).
    alpha: float = 0.5  # weight a of the KD term; ignored (0) without a teacher
    tau: float = 2.0  # distillation temperature
    label_smoothing: float = 0.1  # label smoothing of the CE term
    # Data order and augmentation.
    augment: bool = False  # random crop (+ flip) from mpjax.data inside the jitted step
    crop_padding: int = 2  # zero padding of the random crop, pixels
    flip: bool = True  # random horizontal flips when augment is on
    seed: int = 0  # data order and augmentation keys: batch b of epoch e depends on (seed, e, b)
    # Devices, checkpoints, logging (these may change when a run is resumed, bar num_devices).
    num_devices: int | None = None  # devices of the 'data' mesh axis; None = all local ones
    # Save a resumable checkpoint every N steps and at the end; 0 = only at the end; None =
    # every max(1, min(100, num_steps // 4)) steps (a 400-step run saves at 100, 200, 300, 400).
    checkpoint_every: int | None = None
    log_every: int = 50  # metrics -> metrics.jsonl and the progress bar every N steps
    eval_batch_size: int = 1000  # batch size of evaluate()
    stop_after_steps: int | None = None  # stop early (pre-emption drill); schedule keeps num_steps
    progress: bool = True  # a tqdm bar on a terminal, else a log line to stderr every 5 s


def checkpoint_interval(config: DistillConfig, num_steps: int) -> int:
    """Steps between two checkpoints of a run of ``num_steps`` (see ``checkpoint_every``).

    Examples:
      >>> checkpoint_interval(DistillConfig(), 400), checkpoint_interval(DistillConfig(), 20)
      (100, 5)
      >>> checkpoint_interval(DistillConfig(checkpoint_every=0), 20)
      20
    """
    every = config.checkpoint_every
    if every is None:
        return max(1, min(100, num_steps // 4))
    if every < 0:
        raise ValueError(f"checkpoint_every: {every}; pass >= 0 (0: only at the end) or None.")
    return every or num_steps


def make_schedule(config: DistillConfig, num_steps: int) -> optax.Schedule:
    """The learning-rate schedule: linear warmup, then cosine decay.

    Args:
      config: reads ``learning_rate``, ``warmup_steps`` and ``end_lr_fraction``.
      num_steps: length of the run; the warmup is capped at ``num_steps - 1``.

    Returns:
      ``step -> lr``: 0 at step 0, ``learning_rate`` after ``warmup_steps``, then cosine
      decay to ``learning_rate * end_lr_fraction`` at ``num_steps``.
    """
    warmup = max(0, min(config.warmup_steps, num_steps - 1))
    return optax.warmup_cosine_decay_schedule(
        0.0,
        config.learning_rate,
        warmup,
        max(num_steps, warmup + 1),
        end_value=config.learning_rate * config.end_lr_fraction,
    )


def make_optimizer(
    config: DistillConfig, num_steps: int, masks: PyTree | None = None
) -> optax.GradientTransformation:
    """AdamW on :func:`make_schedule`, after global-norm clipping, masked when ``masks`` given.

    Args:
      config: reads the schedule fields, ``weight_decay`` and ``grad_clip``.
      num_steps: length of the run (for the schedule).
      masks: frozen pruning masks (:func:`~mpjax.training.masked.masked_updates`) or None.

    Returns:
      The optax transformation.
    """
    schedule = make_schedule(config, num_steps)
    parts = [optax.clip_by_global_norm(config.grad_clip)] if config.grad_clip else []
    tx = optax.chain(*parts, optax.adamw(schedule, weight_decay=config.weight_decay))
    return tx if masks is None else masked_updates(tx, masks)
