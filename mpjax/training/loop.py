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

Several ``jax.distributed`` processes run the same call: the mesh spans all their devices,
each feeds only its rows of every batch (:func:`~mpjax.training.mesh.global_batch`), all
save and restore the one orbax checkpoint in process 0's ``workdir`` (a shared file system)
and process 0 alone writes ``metrics.jsonl`` and ``summary.json``. The data is in-memory
arrays or an :class:`~mpjax.training.stream.ImageStream` (decoded on the fly, its iterator
state saved beside each checkpoint). See `docs/guide/distributed.md`.

References:
  [P26] Berlyand et al., arXiv 2606.02608: distillation with a frozen mask,
  L = (1 - a) CE_ls(s, y) + a tau^2 KL(p_t^tau || p_s^tau), a = 0.5, tau = 2, label
  smoothing 0.1; masked weights re-zeroed after every step.
"""

from __future__ import annotations

import contextlib
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
from mpjax.training.mesh import (
    batch_sharding,
    check_batch_size,
    global_batch,
    local_copy,
    make_mesh,
    process_rows,
    replicated,
    shared_workdir,
)
from mpjax.training.progress import Progress
from mpjax.training.runs import (
    NonFiniteGuard,
    resume,
    run_fingerprint,
    stream_batches,
    truncate_metrics,
)
from mpjax.training.stream import ImageStream, InputStates

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
    data: tuple[np.ndarray, np.ndarray] | ImageStream,
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
    last good checkpoint stays. With several processes, see the module docstring.

    Args:
      params: initial parameters (masked first when ``masks`` is given); not donated.
      apply_fn: ``apply_fn(params, images, train) -> logits``.
      data: training ``(images, labels)``, or an :class:`~mpjax.training.stream.ImageStream`
        (which then also applies the augmentation; its state goes to ``workdir/input_state``).
      config: the run's settings.
      workdir: the run's folder (created when missing); process 0's is used by all.
      masks: frozen pruning masks (bool leaves, True = kept, or None) or None.
      teacher_params: teacher parameters for distillation; None trains from labels alone.
      teacher_apply_fn: the teacher's apply function; defaults to ``apply_fn``.
      eval_data: test ``(images, labels)`` evaluated at the end, or None.

    Returns:
      ``(params, summary)``; params on this process's devices; summary has ``steps``,
      ``num_steps``, ``seconds``, ``images_per_second``, ``final_loss``, ``config`` and
      ``test_accuracy`` (when ``eval_data`` is given).

    Raises:
      ValueError: a batch size above the data or not dividing over the devices (and
        processes); a ``workdir`` holding another run; a loss (or parameters) become
        non-finite (the message names the step and the last good checkpoint).
    """
    n = len(data) if isinstance(data, ImageStream) else len(data[0])
    steps_per_epoch = data_lib.num_batches(n, config.batch_size)
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size: {config.batch_size} exceeds the {n} examples.")
    num_steps = config.num_steps or max(1, int(round(config.num_epochs * steps_per_epoch)))
    mesh = make_mesh(config.num_devices, across_processes=True)
    check_batch_size(config.batch_size, mesh)
    tx = make_optimizer(config, num_steps, masks)
    # A stream augments while it decodes; the step must not augment a second time.
    streamed = isinstance(data, ImageStream)
    step_config = dataclasses.replace(config, augment=False) if streamed else config

    def create(params, masks, teacher_params):
        # Private copies: the step donates them and the caller's arrays stay valid (one
        # fresh buffer per leaf, even where student and teacher share an array).
        params = params if masks is None else apply_masks(params, masks)
        state = TrainState.create(params, apply_fn, tx, step_config, teacher_params,
                                  teacher_apply_fn)  # fmt: skip
        return jax.tree.map(jnp.copy, state)

    # One compiled function instead of an eager op (and a compilation) per leaf.
    inputs = jax.device_put((params, masks, teacher_params), replicated(mesh))
    state = jax.jit(create, out_shardings=replicated(mesh))(*inputs)
    workdir = shared_workdir(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt = TrainCheckpointer(workdir / "checkpoints", checkpoint_interval(config, num_steps))
    try:
        return _run(state, ckpt, workdir, data, config, num_steps, masks, eval_data)
    finally:
        ckpt.close()


def _feed(data, config: DistillConfig, num_steps: int, start: int, stop: int, rows: slice, state):
    """``(stream iterator or None, (step, {"image", "label"}) of this process's rows)``."""
    if isinstance(data, ImageStream):
        iterator = data.iterate(config, num_steps, start, state(start))
        return iterator, zip(range(start, stop), (b for _, b in iterator), strict=False)
    images, labels = data
    spe = data_lib.num_batches(len(images), config.batch_size)
    batches = stream_batches(images, labels, config, start, stop, spe)
    return None, ((t, {"image": x[rows], "label": y[rows]}) for t, (x, y) in batches)


def _run(
    state: TrainState,
    ckpt: TrainCheckpointer,
    workdir: Path,
    data: tuple[np.ndarray, np.ndarray] | ImageStream,
    config: DistillConfig,
    num_steps: int,
    masks: PyTree | None,
    eval_data: tuple[np.ndarray, np.ndarray] | None,
) -> tuple[PyTree, dict]:
    """The loop of :func:`train` from a step-0 ``state`` (resumed here from ``ckpt``)."""
    teacher = state.teacher_params is not None
    primary = jax.process_index() == 0  # the one process that writes metrics and summary
    n = len(data) if isinstance(data, ImageStream) else len(data[0])
    steps_per_epoch = data_lib.num_batches(n, config.batch_size)
    fingerprint = run_fingerprint(config, num_steps, masks, teacher)
    state = resume(ckpt, state, fingerprint, workdir)
    start = int(state.step)
    if primary:
        truncate_metrics(workdir / "metrics.jsonl", start)
    stop = num_steps if config.stop_after_steps is None else min(num_steps, config.stop_after_steps)
    desc = "distill" if teacher else "train"
    bar = Progress(num_steps, desc, initial=start, enabled=config.progress and primary)
    guard = NonFiniteGuard(ckpt)
    schedule = jax.jit(make_schedule(config, num_steps))
    shard = batch_sharding(make_mesh(config.num_devices, across_processes=True))
    rows = process_rows(shard, config.batch_size)
    input_state = InputStates(workdir / "input_state", ckpt)
    iterator, feed = _feed(data, config, num_steps, start, stop, rows, input_state.path)
    t0 = t_log = time.perf_counter()
    last_log, loss = start, float("nan")
    with bar, open(workdir / "metrics.jsonl", "a") if primary else contextlib.nullcontext() as log:
        for step, local in feed:
            state, metrics = train_step(state, global_batch(local, shard, config.batch_size))
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
                if log is not None:
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                loss, t_log, last_log = row["loss"], now, step + 1
                bar.set_postfix(loss=loss, img_s=round(ips))
            bar.update(1)
            if (step + 1) % ckpt.save_every == 0 or step + 1 == stop:
                guard.check(state.params)  # never save NaN parameters
                input_state.save(step + 1, iterator)  # before the checkpoint that points to it
                position = {
                    "epoch": (step + 1) // steps_per_epoch,
                    "batch": (step + 1) % steps_per_epoch,
                }
                meta = {**position, "num_steps": num_steps, "fingerprint": fingerprint}
                ckpt.save(step + 1, state.replace(teacher_params=None), meta, force=True)
                input_state.prune()
    seconds = time.perf_counter() - t0
    summary = {
        "steps": int(state.step),
        "num_steps": num_steps,
        "seconds": seconds,
        "images_per_second": (int(state.step) - start) * config.batch_size / max(seconds, 1e-9),
        "final_loss": loss,
        "config": dataclasses.asdict(config),
    }
    params = local_copy(state.params)
    if eval_data is not None:
        summary["test_accuracy"] = evaluate(
            params, state.apply_fn, *eval_data, config.eval_batch_size,
            None if jax.process_count() > 1 else config.num_devices, progress=config.progress,
        )  # fmt: skip
    if primary:
        (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    return params, summary


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
