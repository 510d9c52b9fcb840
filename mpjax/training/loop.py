"""Knowledge distillation and plain training with frozen pruning masks, data parallel.

The training code follows flax's examples: a :class:`Config` with commented fields, a
jitted pure :func:`train_step` ``(state, batch) -> (state, metrics)`` with donated
buffers, and a loop (:func:`fit`, :func:`distill`) that adds checkpoints, resume, a tqdm
progress bar and JSONL metrics around it.

Models are any ``apply_fn(params, images, train: bool) -> logits``. Images reach it as
float32 ``[B, H, W, C]`` in ``[0, 1]`` (uint8 pixels are divided by 255, a channel axis is
added to ``[B, H, W]``; see :func:`prepare_images`).

Masks stay frozen: :func:`masked_updates` wraps any optax optimizer so that pruned weights
get no gradient (their optimizer state stays zero) and are set back to exactly zero after
every step, whatever the inner optimizer does (weight decay, momentum ...).

Data parallelism has one code path: a 1-D mesh over the local devices with axis
``"data"``; the batch is sharded along it, parameters and optimizer state are replicated,
and XLA inserts the gradient all-reduce. One device is the mesh of size 1.

References:
  [P26] Distillation with a frozen mask: L = (1 - a) CE_ls(s, y) + a tau^2 KL(p_t^tau || p_s^tau),
  a = 0.5, tau = 2, label smoothing 0.1; masked weights re-zeroed after every step.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from mpjax import data as data_lib
from mpjax.checkpoint import TrainCheckpointer
from mpjax.pruning import masks as masks_lib
from mpjax.tree import flatten

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array, bool], jax.Array]


@dataclasses.dataclass
class Config:
    """Training / distillation hyper-parameters (defaults: the paper's distillation loss)."""

    learning_rate: float = 1e-3  # peak learning rate of the warmup + cosine schedule
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    warmup_steps: int = 100  # linear warmup from 0 to learning_rate
    end_lr_fraction: float = 0.0  # cosine decays to learning_rate * end_lr_fraction
    grad_clip: float | None = 1.0  # global-norm gradient clipping; None disables it
    batch_size: int = 128  # global batch, split over the devices (must divide evenly)
    num_epochs: float = 1.0  # length of the run when num_steps is None
    num_steps: int | None = None  # total optimizer steps (overrides num_epochs)
    alpha: float = 0.5  # weight a of the KD term; ignored (0) without a teacher
    tau: float = 2.0  # distillation temperature
    label_smoothing: float = 0.1  # label smoothing of the CE term
    augment: bool = False  # random crop (+ flip) from mpjax.data inside the jitted step
    crop_padding: int = 2  # zero padding of the random crop, pixels
    flip: bool = True  # random horizontal flips when augment is on
    seed: int = 0  # data order and augmentation keys: batch b of epoch e depends on (seed, e, b)
    num_devices: int | None = None  # devices of the 'data' mesh axis; None = all local ones
    checkpoint_every: int = 0  # save a resumable checkpoint every N steps; 0 = only at the end
    log_every: int = 50  # metrics -> metrics.jsonl and the progress bar every N steps
    eval_batch_size: int = 1000  # batch size of evaluate()
    stop_after_steps: int | None = (
        None  # end this run early (pre-emption drill); schedule keeps num_steps
    )
    progress: bool = True  # tqdm progress bar (auto-disabled when stderr is not a terminal)


def prepare_images(images: jax.Array) -> jax.Array:
    """Model input: integer pixels / 255 as float32, ``[B, H, W]`` -> ``[B, H, W, 1]``."""
    x = jnp.asarray(images)
    if jnp.issubdtype(x.dtype, jnp.integer):
        x = x.astype(jnp.float32) / 255.0
    return x[..., None] if x.ndim == 3 else x


def kd_terms(
    student_logits: jax.Array,
    teacher_logits: jax.Array | None,
    labels: jax.Array,
    alpha: float = 0.5,
    tau: float = 2.0,
    label_smoothing: float = 0.1,
) -> dict[str, jax.Array]:
    """Batch means of the distillation loss and its parts (see :func:`kd_loss`).

    Returns:
      ``{"loss", "ce", "kl"}``; ``kl`` is 0 and ``loss == ce`` when ``teacher_logits`` is None.
    """
    num_classes = student_logits.shape[-1]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
    ce = optax.softmax_cross_entropy(student_logits, targets).mean()
    if teacher_logits is None:
        return {"loss": ce, "ce": ce, "kl": jnp.zeros_like(ce)}
    log_pt = jax.nn.log_softmax(jax.lax.stop_gradient(teacher_logits) / tau)
    log_ps = jax.nn.log_softmax(student_logits / tau)
    kl = jnp.sum(jnp.exp(log_pt) * (log_pt - log_ps), axis=-1).mean()
    return {"loss": (1.0 - alpha) * ce + alpha * tau**2 * kl, "ce": ce, "kl": kl}


def kd_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array | None,
    labels: jax.Array,
    alpha: float = 0.5,
    tau: float = 2.0,
    label_smoothing: float = 0.1,
) -> jax.Array:
    """Knowledge-distillation loss, batch mean.

    L = (1 - a) CE_ls(s, y) + a tau^2 KL(softmax(t / tau) || softmax(s / tau)),
    where CE_ls is the cross-entropy against labels smoothed to ``(1 - ls) onehot + ls / K``.
    The teacher logits get no gradient. Without a teacher, L = CE_ls.

    Args:
      student_logits: ``[B, K]``.
      teacher_logits: ``[B, K]`` or ``None``.
      labels: int ``[B]``.
      alpha: weight ``a`` of the KD term.
      tau: temperature (the ``tau^2`` factor keeps gradient scale independent of ``tau``).
      label_smoothing: ``ls``.

    Examples:
      >>> z = jnp.array([[2.0, 0.0, -1.0]])
      >>> bool(jnp.isclose(kd_loss(z, z, jnp.array([0]), alpha=1.0), 0.0))
      True
    """
    return kd_terms(student_logits, teacher_logits, labels, alpha, tau, label_smoothing)["loss"]


class MaskedUpdatesState(NamedTuple):
    """State of :func:`masked_updates`: the inner optimizer's state and the frozen masks."""

    inner_state: optax.OptState
    masks: PyTree


def _is_none(x: Any) -> bool:
    return x is None


def _where_kept(masks: PyTree, tree: PyTree, pruned_value: PyTree | None = None) -> PyTree:
    """``tree`` with pruned entries replaced by 0 (or by ``pruned_value``'s entries)."""
    if pruned_value is None:
        return jax.tree.map(
            lambda m, x: x if m is None else jnp.where(m, x, jnp.zeros_like(x)),
            masks,
            tree,
            is_leaf=_is_none,
        )
    return jax.tree.map(
        lambda m, x, v: x if m is None else jnp.where(m, x, v),
        masks,
        tree,
        pruned_value,
        is_leaf=_is_none,
    )


def masked_updates(
    inner: optax.GradientTransformation, masks: PyTree
) -> optax.GradientTransformation:
    """Wrap an optax optimizer so that pruned weights stay exactly zero.

    Gradients of pruned entries are zeroed before ``inner`` sees them (its moment estimates
    stay zero there), and the returned update of a pruned entry is ``-w`` so that
    ``optax.apply_updates`` leaves ``w + (-w) = 0`` exactly, even if the weight was not zero.

    Args:
      inner: any optax transformation (e.g. ``optax.adamw``).
      masks: masks pytree with params' structure; bool leaves (True = kept) or ``None``
        (not pruned). The masks live in the optimizer state.

    Returns:
      An ``optax.GradientTransformation``; ``update`` needs ``params``.
    """
    masks = jax.tree.map(
        lambda m: m if m is None else jnp.asarray(m, bool), masks, is_leaf=_is_none
    )

    def init_fn(params):
        masks_lib.check_masks(params, masks)
        return MaskedUpdatesState(inner.init(params), masks)

    def update_fn(updates, state, params=None):
        grads = _where_kept(state.masks, updates)
        new, inner_state = inner.update(grads, state.inner_state, params)
        if params is None:
            new = _where_kept(state.masks, new)
        else:
            new = _where_kept(state.masks, new, jax.tree.map(jnp.negative, params))
        return new, MaskedUpdatesState(inner_state, state.masks)

    return optax.GradientTransformation(init_fn, update_fn)


def make_schedule(config: Config, num_steps: int) -> optax.Schedule:
    """Linear warmup over ``warmup_steps`` to ``learning_rate``, then cosine decay to
    ``learning_rate * end_lr_fraction`` at ``num_steps``."""
    warmup = max(0, min(config.warmup_steps, num_steps - 1))
    return optax.warmup_cosine_decay_schedule(
        0.0,
        config.learning_rate,
        warmup,
        max(num_steps, warmup + 1),
        end_value=config.learning_rate * config.end_lr_fraction,
    )


def make_optimizer(
    config: Config, num_steps: int, masks: PyTree | None = None
) -> optax.GradientTransformation:
    """AdamW with linear warmup + cosine decay (and clipping), masked when ``masks`` given."""
    schedule = make_schedule(config, num_steps)
    parts = [optax.clip_by_global_norm(config.grad_clip)] if config.grad_clip else []
    tx = optax.chain(*parts, optax.adamw(schedule, weight_decay=config.weight_decay))
    return tx if masks is None else masked_updates(tx, masks)


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
        cls, params, apply_fn, tx, config: Config, teacher_params=None, teacher_apply_fn=None
    ):
        """A step-0 state; the teacher defaults to the student's own ``apply_fn``."""
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
    """One optimizer step on ``{"image", "label"}``; returns the new state and batch metrics.

    The state's buffers are donated (do not reuse the ``state`` passed in).
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


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
    """A 1-D ``('data',)`` mesh over the first ``num_devices`` local devices (default all)."""
    devices = jax.local_devices()
    n = len(devices) if num_devices is None else int(num_devices)
    if not 1 <= n <= len(devices):
        raise ValueError(f"num_devices: {n} requested, {len(devices)} local devices available.")
    # Auto axes: XLA propagates the batch sharding and inserts the gradient all-reduce.
    return jax.make_mesh(
        (n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices[:n]
    )


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
) -> float:
    """Top-1 accuracy of ``apply_fn(params, ., train=False)`` on ``(images, labels)``.

    Batches are padded to a fixed size (no recompiles) and sharded over the data mesh.
    """
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"labels: {len(labels)} labels for {len(images)} images (need > 0).")
    mesh = make_mesh(num_devices)
    bs = -(-min(batch_size, len(images)) // mesh.size) * mesh.size
    params = jax.device_put(params, NamedSharding(mesh, P()))
    shard = NamedSharding(mesh, P("data"))
    correct = 0
    for start in range(0, len(images), bs):
        x, y = np.asarray(images[start : start + bs]), np.asarray(labels[start : start + bs])
        valid = np.arange(bs) < len(x)
        pad = bs - len(x)
        x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]) if pad else x
        y = np.concatenate([y, np.zeros(pad, y.dtype)]) if pad else y
        batch = jax.device_put((x, y, valid), shard)
        correct += int(_count_correct(apply_fn, params, *batch))
    return correct / len(images)


def fit(
    params: PyTree,
    apply_fn: ApplyFn,
    data: tuple[np.ndarray, np.ndarray],
    config: Config,
    workdir: str | Path,
    masks: PyTree | None = None,
    teacher_params: PyTree | None = None,
    teacher_apply_fn: ApplyFn | None = None,
    eval_data: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[PyTree, dict]:
    """Train (or distill into) ``params`` with frozen ``masks``; resumable from ``workdir``.

    Writes ``workdir/metrics.jsonl`` (one JSON object per logged step), checkpoints under
    ``workdir/checkpoints`` (every ``config.checkpoint_every`` steps and at the end) and
    ``workdir/summary.json``. If ``workdir`` holds a checkpoint, the run resumes from it and
    reproduces the uninterrupted run bit for bit (same batches, keys and schedule).

    Returns:
      ``(params, summary)``; summary has ``steps``, ``seconds``, ``images_per_second``,
      ``final_loss`` and ``test_accuracy`` (when ``eval_data`` is given).
    """
    images, labels = data
    steps_per_epoch = data_lib.num_batches(len(images), config.batch_size)
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size: {config.batch_size} exceeds the {len(images)} examples.")
    num_steps = config.num_steps or max(1, int(round(config.num_epochs * steps_per_epoch)))
    mesh = make_mesh(config.num_devices)
    if config.batch_size % mesh.size:
        raise ValueError(
            f"batch_size: {config.batch_size} is not divisible by the {mesh.size} devices; "
            "pick a multiple or set num_devices."
        )
    if masks is not None:
        params = masks_lib.apply_masks(params, masks)
    tx = make_optimizer(config, num_steps, masks)
    state = TrainState.create(params, apply_fn, tx, config, teacher_params, teacher_apply_fn)
    # Private replicated copies: the step donates them and the caller's arrays stay valid
    # (one fresh buffer per leaf, even where student and teacher share an array).
    state = jax.tree.map(jnp.copy, jax.device_put(state, NamedSharding(mesh, P())))
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt = TrainCheckpointer(workdir / "checkpoints", config.checkpoint_every or num_steps)
    fingerprint = run_fingerprint(config, num_steps, masks, teacher_params is not None)
    state = _resume(ckpt, state, fingerprint, workdir)
    start = int(state.step)
    stop = num_steps if config.stop_after_steps is None else min(num_steps, config.stop_after_steps)
    bar = tqdm(
        total=num_steps,
        initial=start,
        disable=None if config.progress else True,
        desc="distill" if teacher_params is not None else "train",
        unit="step",
    )
    batch_sharding = NamedSharding(mesh, P("data"))
    t0 = t_log = time.perf_counter()
    last_log, loss = start, float("nan")
    with open(workdir / "metrics.jsonl", "a") as log:
        for step, (x, y) in _stream(images, labels, config, start, stop, steps_per_epoch):
            batch = jax.device_put({"image": x, "label": y}, batch_sharding)
            state, metrics = train_step(state, batch)
            if (step + 1) % config.log_every == 0 or step + 1 == stop:
                now = time.perf_counter()
                ips = (step + 1 - last_log) * config.batch_size / max(now - t_log, 1e-9)
                row = {
                    "step": step + 1,
                    "epoch": step // steps_per_epoch,
                    **{k: float(v) for k, v in jax.device_get(metrics).items()},
                    "lr": float(make_schedule(config, num_steps)(step)),
                    "images_per_second": ips,
                }
                log.write(json.dumps(row) + "\n")
                log.flush()
                loss, t_log, last_log = row["loss"], now, step + 1
                bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{ips:.0f}")
            bar.update(1)
            position = {
                "epoch": (step + 1) // steps_per_epoch,
                "batch": (step + 1) % steps_per_epoch,
            }
            ckpt.save(
                step + 1,
                state.replace(teacher_params=None),
                {**position, "num_steps": num_steps, "fingerprint": fingerprint},
                force=step + 1 == stop,
            )
    bar.close()
    ckpt.close()
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
            state.params, apply_fn, *eval_data, config.eval_batch_size, config.num_devices
        )
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    return state.params, summary


def _stream(images, labels, config: Config, start: int, stop: int, steps_per_epoch: int):
    """``(step, (x, y))`` for steps ``start .. stop - 1``; batch b of epoch e is fixed by
    ``(seed, e, b)`` (:func:`mpjax.data.batches`), so a resumed run sees the same data."""
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


def _resume(ckpt: TrainCheckpointer, state: TrainState, fingerprint: str, workdir: Path):
    """``state`` restored from ``ckpt``'s latest step (if any), the teacher kept as given."""
    if ckpt.latest_step() is None:
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
    return restored.replace(teacher_params=state.teacher_params)


#: Config fields that may change between an interrupted run and its resumption.
_VOLATILE = ("stop_after_steps", "progress", "log_every", "eval_batch_size", "checkpoint_every")


def run_fingerprint(config: Config, num_steps: int, masks: PyTree | None, teacher: bool) -> str:
    """SHA-256 of what makes a run: the config (bar logging fields), length, masks, teacher."""
    h = hashlib.sha256()
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in _VOLATILE}
    h.update(json.dumps([settings, num_steps, teacher], sort_keys=True).encode())
    for path, m in ({} if masks is None else flatten(masks)).items():
        h.update(path.encode() + np.packbits(np.asarray(m, bool)).tobytes())
    return h.hexdigest()


def distill(
    student_params: PyTree,
    teacher_params: PyTree,
    masks: PyTree | None,
    apply_fn: ApplyFn,
    data: tuple[np.ndarray, np.ndarray],
    config: Config,
    workdir: str | Path,
    teacher_apply_fn: ApplyFn | None = None,
    eval_data: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[PyTree, dict]:
    """Distill ``teacher_params`` into the pruned ``student_params`` with the mask frozen.

    The teacher runs ``teacher_apply_fn`` (default ``apply_fn``: same architecture, e.g. the
    dense model). Loss and schedule per :class:`Config` (see :func:`kd_loss`); every other
    behaviour as :func:`fit`.

    Returns:
      ``(params, summary)``; pruned entries of ``params`` are exactly zero.
    """
    return fit(
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
