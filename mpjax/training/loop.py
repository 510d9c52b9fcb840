"""Training and knowledge distillation with frozen pruning masks, data parallel and resumable.

The code follows flax's examples: a :class:`~mpjax.training.config.DistillConfig` with
commented fields (and the optimizer it describes,
:func:`~mpjax.training.config.make_optimizer`), a jitted pure :func:`train_step`
``(state, batch) -> (state, metrics)`` with donated buffers, and a loop (:func:`train`,
:func:`distill`) that adds periodic checkpoints, resume, a guard against non-finite losses,
progress (:mod:`~mpjax.training.progress`) and JSONL metrics around it
(:mod:`~mpjax.training.runs`).

Models are any ``apply_fn(params, images, train: bool) -> logits``. Images reach it as
float32 ``[B, H, W, C]`` in ``[0, 1]`` (:func:`~mpjax.training.images.prepare_images`).
The loss is :func:`~mpjax.training.kd.kd_loss`; masks stay frozen through
:func:`~mpjax.training.masked.masked_updates`; the batch is split over the 1-D ``"data"``
mesh of :func:`~mpjax.training.mesh.make_mesh` (one device is the mesh of size 1).
See `docs/method/distillation.md` (KD loss, frozen masks).

References:
  [P26] Berlyand et al., arXiv 2606.02608: distillation with a frozen mask,
  L = (1 - a) CE_ls(s, y) + a tau^2 KL(p_t^tau || p_s^tau), a = 0.5, tau = 2, label
  smoothing 0.1; masked weights re-zeroed after every step.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from mpjax import data as data_lib
from mpjax.checkpoint import TrainCheckpointer
from mpjax.pruning import apply_masks
from mpjax.training.config import (
    DistillConfig,
    checkpoint_interval,
    make_optimizer,
    make_schedule,
)
from mpjax.training.evaluation import evaluate
from mpjax.training.images import prepare_images
from mpjax.training.kd import kd_terms
from mpjax.training.mesh import batch_sharding, make_mesh, replicated
from mpjax.training.progress import Progress
from mpjax.training.runs import (
    NonFiniteGuard,
    resume,
    run_fingerprint,
    stream_batches,
    truncate_metrics,
)

# DistillConfig, make_optimizer, make_schedule (config.py), make_mesh (mesh.py) and
# run_fingerprint (runs.py) are re-exported: a run is configured, optimized, laid out and
# identified through this module.
__all__ = [
    "DistillConfig",
    "TrainState",
    "distill",
    "make_mesh",
    "make_optimizer",
    "make_schedule",
    "run_fingerprint",
    "train",
    "train_step",
]

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array, bool], jax.Array]


class TrainState(struct.PyTreeNode):
    """Everything a step reads. Array fields are pytree leaves; functions are static."""

    step: jax.Array
    params: PyTree
    opt_state: optax.OptState
    rng: jax.Array  # base key; step t uses fold_in(rng, t), so resume needs no RNG bookkeeping
    teacher_params: PyTree = None
    apply_fn: ApplyFn = struct.field(pytree_node=False, default=None)
    teacher_apply_fn: ApplyFn | None = struct.field(pytree_node=False, default=None)
    tx: optax.GradientTransformation = struct.field(pytree_node=False, default=None)
    loss_args: tuple[float, float, float] = struct.field(pytree_node=False, default=(0.5, 2.0, 0.1))
    augment_fn: Callable | None = struct.field(pytree_node=False, default=None)

    @classmethod
    def create(
        cls,
        params: PyTree,
        apply_fn: ApplyFn,
        tx: optax.GradientTransformation,
        config: DistillConfig,
        teacher_params: PyTree = None,
        teacher_apply_fn: ApplyFn | None = None,
    ) -> TrainState:
        """A step-0 state.

        Args:
          params: the student's parameters.
          apply_fn: ``apply_fn(params, images, train) -> logits`` of the student.
          tx: the optimizer (e.g. :func:`make_optimizer`).
          config: reads the loss fields, the augmentation fields and ``seed``.
          teacher_params: the teacher's parameters; None trains from labels alone.
          teacher_apply_fn: the teacher's apply function; defaults to ``apply_fn``.

        Returns:
          The state at step 0 with ``tx.init(params)`` as optimizer state.
        """
        if teacher_params is not None and teacher_apply_fn is None:
            teacher_apply_fn = apply_fn
        augment = None
        if config.augment:
            augment = functools.partial(
                data_lib.augment, padding=config.crop_padding, flip=config.flip
            )
        alpha = config.alpha if teacher_params is not None else 0.0
        return cls(
            step=jnp.asarray(0, jnp.int32),
            params=params,
            opt_state=tx.init(params),
            rng=jax.random.PRNGKey(config.seed),
            teacher_params=teacher_params,
            apply_fn=apply_fn,
            teacher_apply_fn=teacher_apply_fn,
            tx=tx,
            loss_args=(float(alpha), float(config.tau), float(config.label_smoothing)),
            augment_fn=augment,
        )


@functools.partial(jax.jit, donate_argnums=0)
def train_step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict]:
    """One optimizer step on a batch; the state's buffers are donated.

    Args:
      state: the current state (do not reuse it after the call: its buffers are donated).
      batch: ``{"image": [B, H, W(, C)], "label": int [B]}``.

    Returns:
      ``(state, metrics)``: the state after the step and the batch's ``loss``, ``ce``,
      ``kl`` and ``accuracy``.
    """
    images = prepare_images(batch["image"])
    if state.augment_fn is not None:
        images = state.augment_fn(jax.random.fold_in(state.rng, state.step), images)
    teacher_logits = None
    if state.teacher_apply_fn is not None:
        teacher_logits = state.teacher_apply_fn(state.teacher_params, images, False)

    def loss_fn(params):
        logits = state.apply_fn(params, images, True)
        terms = kd_terms(logits, teacher_logits, batch["label"], *state.loss_args)
        return terms["loss"], (terms, logits)

    grads, (terms, logits) = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(terms, accuracy=jnp.mean(jnp.argmax(logits, -1) == batch["label"]))
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def train(
    params: PyTree,
    apply_fn: ApplyFn,
    data: tuple[np.ndarray, np.ndarray],
    config: DistillConfig,
    workdir: str | Path,
    masks: PyTree | None = None,
    teacher_params: PyTree | None = None,
    teacher_apply_fn: ApplyFn | None = None,
    eval_data: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[PyTree, dict]:
    """Train (or distill into) ``params`` with frozen ``masks``; resumable from ``workdir``.

    Writes ``workdir/metrics.jsonl`` (one JSON object per logged step), atomic checkpoints
    under ``workdir/checkpoints`` (:func:`~mpjax.training.config.checkpoint_interval`: by
    default a quarter of the run, at most 100 steps apart, and at the end) and
    ``workdir/summary.json``. If ``workdir`` holds a checkpoint, the run resumes from it
    (printing ``resuming from step k`` to stderr), reproduces the uninterrupted run bit for
    bit (same batches, keys and schedule) and drops the metrics rows logged after that step.
    A loss that becomes NaN or infinite stops the run before anything else is saved: the
    last good checkpoint stays.

    Args:
      params: initial parameters (masked first when ``masks`` is given); not donated.
      apply_fn: ``apply_fn(params, images, train) -> logits``.
      data: training ``(images, labels)``.
      config: the run's settings.
      workdir: the run's folder (created when missing).
      masks: frozen pruning masks (bool leaves, True = kept, or None) or None.
      teacher_params: teacher parameters for distillation; None trains from labels alone.
      teacher_apply_fn: the teacher's apply function; defaults to ``apply_fn``.
      eval_data: test ``(images, labels)`` evaluated at the end, or None.

    Returns:
      ``(params, summary)``; summary has ``steps``, ``num_steps``, ``seconds``,
      ``images_per_second``, ``final_loss``, ``config`` and ``test_accuracy`` (when
      ``eval_data`` is given).

    Raises:
      ValueError: when the batch size exceeds the data or does not divide over the devices,
        when ``workdir`` holds a checkpoint of a different run, or when the loss (or the
        parameters) became non-finite (the message names the step and the last good
        checkpoint).
    """
    images, labels = data
    steps_per_epoch = data_lib.num_batches(len(images), config.batch_size)
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size: {config.batch_size} exceeds the {len(images)} examples.")
    num_steps = config.num_steps or max(1, int(round(config.num_epochs * steps_per_epoch)))
    save_every = checkpoint_interval(config, num_steps)
    mesh = make_mesh(config.num_devices)
    if config.batch_size % mesh.size:
        raise ValueError(
            f"batch_size: {config.batch_size} is not divisible by the {mesh.size} devices; "
            "pick a multiple or set num_devices."
        )
    if masks is not None:
        params = apply_masks(params, masks)
    tx = make_optimizer(config, num_steps, masks)
    state = TrainState.create(params, apply_fn, tx, config, teacher_params, teacher_apply_fn)
    # Private replicated copies: the step donates them and the caller's arrays stay valid
    # (one fresh buffer per leaf, even where student and teacher share an array).
    state = jax.tree.map(jnp.copy, jax.device_put(state, replicated(mesh)))
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt = TrainCheckpointer(workdir / "checkpoints", save_every)
    try:
        return _run(state, ckpt, workdir, images, labels, config, num_steps, masks, eval_data)
    finally:
        ckpt.close()


def _run(
    state: TrainState,
    ckpt: TrainCheckpointer,
    workdir: Path,
    images: np.ndarray,
    labels: np.ndarray,
    config: DistillConfig,
    num_steps: int,
    masks: PyTree | None,
    eval_data: tuple[np.ndarray, np.ndarray] | None,
) -> tuple[PyTree, dict]:
    """The loop of :func:`train` from a step-0 ``state`` (resumed here from ``ckpt``)."""
    teacher = state.teacher_params is not None
    steps_per_epoch = data_lib.num_batches(len(images), config.batch_size)
    fingerprint = run_fingerprint(config, num_steps, masks, teacher)
    state = resume(ckpt, state, fingerprint, workdir)
    start = int(state.step)
    truncate_metrics(workdir / "metrics.jsonl", start)
    stop = num_steps if config.stop_after_steps is None else min(num_steps, config.stop_after_steps)
    desc = "distill" if teacher else "train"
    bar = Progress(num_steps, desc, initial=start, enabled=config.progress)
    guard = NonFiniteGuard(ckpt)
    schedule = make_schedule(config, num_steps)
    shard = batch_sharding(make_mesh(config.num_devices))
    t0 = t_log = time.perf_counter()
    last_log, loss = start, float("nan")
    with bar, open(workdir / "metrics.jsonl", "a") as log:
        for step, (x, y) in stream_batches(images, labels, config, start, stop, steps_per_epoch):
            batch = jax.device_put({"image": x, "label": y}, shard)
            state, metrics = train_step(state, batch)
            guard.record(step + 1, metrics["loss"])
            if (step + 1) % config.log_every == 0 or step + 1 == stop:
                guard.check()
                now = time.perf_counter()
                ips = (step + 1 - last_log) * config.batch_size / max(now - t_log, 1e-9)
                row = {
                    "step": step + 1,
                    "epoch": step // steps_per_epoch,
                    **{k: float(v) for k, v in jax.device_get(metrics).items()},
                    "lr": float(schedule(step)),
                    "images_per_second": ips,
                }
                log.write(json.dumps(row) + "\n")
                log.flush()
                loss, t_log, last_log = row["loss"], now, step + 1
                bar.set_postfix(loss=loss, img_s=round(ips))
            bar.update(1)
            if (step + 1) % ckpt.save_every == 0 or step + 1 == stop:
                guard.check(state.params)  # never save NaN parameters
                position = {
                    "epoch": (step + 1) // steps_per_epoch,
                    "batch": (step + 1) % steps_per_epoch,
                }
                meta = {**position, "num_steps": num_steps, "fingerprint": fingerprint}
                ckpt.save(step + 1, state.replace(teacher_params=None), meta, force=True)
    seconds = time.perf_counter() - t0
    summary = {
        "steps": int(state.step),
        "num_steps": num_steps,
        "seconds": seconds,
        "images_per_second": (int(state.step) - start) * config.batch_size / max(seconds, 1e-9),
        "final_loss": loss,
        "config": dataclasses.asdict(config),
    }
    if eval_data is not None:
        summary["test_accuracy"] = evaluate(
            state.params, state.apply_fn, *eval_data, config.eval_batch_size, config.num_devices,
            progress=config.progress,
        )  # fmt: skip
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    return state.params, summary


def distill(
    student_params: PyTree,
    teacher_params: PyTree,
    masks: PyTree | None,
    apply_fn: ApplyFn,
    data: tuple[np.ndarray, np.ndarray],
    config: DistillConfig,
    workdir: str | Path,
    teacher_apply_fn: ApplyFn | None = None,
    eval_data: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[PyTree, dict]:
    """Distill ``teacher_params`` into the pruned ``student_params`` with the mask frozen.

    The teacher runs ``teacher_apply_fn`` (default ``apply_fn``: same architecture, e.g. the
    dense model). Loss and schedule per :class:`DistillConfig` (see
    :func:`~mpjax.training.kd.kd_loss`); every other behaviour as :func:`train`.
    See `docs/method/distillation.md`.

    Args:
      student_params: the pruned model's parameters.
      teacher_params: the teacher's parameters.
      masks: frozen pruning masks (True = kept) or None.
      apply_fn: the student's ``apply_fn(params, images, train) -> logits``.
      data: training ``(images, labels)``.
      config: the run's settings.
      workdir: the run's folder (resumes from its checkpoint).
      teacher_apply_fn: the teacher's apply function; defaults to ``apply_fn``.
      eval_data: test ``(images, labels)`` evaluated at the end, or None.

    Returns:
      ``(params, summary)`` as :func:`train`; pruned entries of ``params`` are exactly zero.
    """
    return train(
        student_params,
        apply_fn,
        data,
        config,
        workdir,
        masks=masks,
        teacher_params=teacher_params,
        teacher_apply_fn=teacher_apply_fn,
        eval_data=eval_data,
    )
