"""L2-regularised training dynamics of fully connected nets, recorded epoch by epoch.

:func:`train` trains ``MLP(widths)`` for every *member* (arm x seed, see
:mod:`mpjax.dynamics.config`) at once: the whole train step is ``vmap``-ed over members and an
epoch is one ``jit``-ed ``lax.scan`` over minibatches. The loss of a member is

    J(W) = CE(W) + l2 sum_l ||W_l||_F^2 + l1 sum_l ||W_l||_1        (kernels only)

minimised by SGD (momentum 0.9) with a staircase schedule ``lr * decay^(floor(epoch/every))``;
the penalty is :func:`mpjax.certificates.params_penalty` with per-member strengths.
After every epoch (and at the initialisation, epoch 0) each layer of each member is analysed
(:mod:`mpjax.dynamics.record`: singular spectrum, BEMA fit, bulk energy, g*N, inverse-BBP
spike estimates, subspace overlaps), members with ``mp=True`` are MP-pruned every
``prune_every`` epochs (Algorithm 1: keep, sparsify, split; :mod:`mpjax.dynamics.algorithm1`),
and the records go to an on-disk
dataset (:mod:`mpjax.dynamics.store`) that a later call with ``resume=True`` extends.
The theory and the study's protocol: `docs/method/l2-theory.md`.

Command line: ``mpjax dynamics --config NAME|FILE.json --out DIR [--resume] [--epochs N]``
(:mod:`mpjax.cli.dynamics`).

References:
  [P25] Berlyand et al., arXiv 2503.01922, Algorithm 1 and §5 (L2 training dynamics).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from mpjax.certificates import params_penalty
from mpjax.dynamics import store
from mpjax.dynamics.algorithm1 import hold_split_ranks, mp_prune_members
from mpjax.dynamics.config import (
    DynamicsConfig,
    member_strengths,
    to_dict,
    validate,
)
from mpjax.dynamics.data import StudyData, epoch_indices, load_study_data, steps_per_epoch
from mpjax.dynamics.model import compile_key, evaluate_members, init_params, model_of
from mpjax.dynamics.presets import load_config
from mpjax.dynamics.record import default_backend, layer_paths, record_epoch

__all__ = [
    "evaluate_members",
    "init_members",
    "init_params",
    "model_of",
    "study_optimizer",
    "train",
]

PyTree = Any


def study_optimizer(config: DynamicsConfig, n_steps: int) -> optax.GradientTransformation:
    """SGD with momentum (or Adam), lr decayed by ``lr_decay`` every ``lr_decay_every`` epochs.

    Args:
      config: the run's config (``optimizer``, ``lr``, ``lr_decay``, ``lr_decay_every``,
        ``momentum``).
      n_steps: optimiser steps per epoch (the schedule counts steps).
    """
    sched = optax.exponential_decay(
        config.lr, config.lr_decay_every * n_steps, config.lr_decay, staircase=True
    )
    if config.optimizer == "adam":
        return optax.adam(sched)
    return optax.sgd(sched, momentum=config.momentum or None)


@functools.lru_cache(maxsize=16)
def _make_init_fn(config: DynamicsConfig, n_steps: int):
    tx = study_optimizer(config, n_steps)

    def init(keys):
        params = jax.vmap(lambda k: init_params(config, k))(keys)
        return params, jax.vmap(tx.init)(params)

    return jax.jit(init)


def init_members(config: DynamicsConfig, n_steps: int) -> tuple[PyTree, PyTree]:
    """Stacked ``(params, opt_state)`` with a leading member axis; member ``i`` uses its seed.

    ``jax.random`` under ``vmap`` draws per key exactly what an unbatched call draws, so a
    member's start depends on its seed only, not on the other members.
    """
    keys = jnp.stack([jax.random.key(seed) for _, seed in config.members])
    return _make_init_fn(compile_key(config), n_steps)(keys)


def _epoch_fn(config: DynamicsConfig, n_steps: int):
    """The cached jitted epoch function of :func:`_make_epoch_fn`."""
    return _make_epoch_fn(compile_key(config), n_steps)


@functools.lru_cache(maxsize=16)
def _make_epoch_fn(config: DynamicsConfig, n_steps: int):
    """Jitted ``(params, opt, x, y, idx[steps, M, B], l1, l2) -> (params, opt, metrics)``."""
    model, tx = model_of(config), study_optimizer(config, n_steps)

    def loss_fn(p, xb, yb, l1, l2):
        logits = model.apply({"params": p}, xb)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
        acc = jnp.mean(jnp.argmax(logits, -1) == yb)
        return ce + params_penalty(p, l1, l2), (ce, acc)

    def member_step(p, o, x, y, idx, l1, l2):
        (loss, (ce, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            p, x[idx], y[idx], l1, l2
        )
        updates, o = tx.update(grads, o, p)
        return optax.apply_updates(p, updates), o, jnp.stack([loss, ce, acc])

    def epoch(params, opt, x, y, idx, l1, l2):
        def step(carry, idx_t):
            p, o = carry
            p, o, m = jax.vmap(member_step, in_axes=(0, 0, None, None, 0, 0, 0))(
                p, o, x, y, idx_t, l1, l2
            )
            return (p, o), m

        (params, opt), ms = jax.lax.scan(step, (params, opt), idx)
        return params, opt, ms.mean(0)

    return jax.jit(epoch, donate_argnums=(0, 1))


def _check_resume(out: str, config: DynamicsConfig) -> None:
    stored = load_config(os.path.join(out, "config.json"))
    diff = [
        f.name
        for f in dataclasses.fields(DynamicsConfig)
        if f.name != "epochs" and getattr(stored, f.name) != getattr(config, f.name)
    ]
    if diff:
        raise ValueError(
            f"--out {out}: the stored run differs from this config in {diff}; "
            "resume with the same config (only --epochs may change) or a new --out"
        )


def _arms_summary(config: DynamicsConfig, metrics: dict[str, np.ndarray]) -> dict[str, Any]:
    out = {}
    for name, vals in metrics.items():
        out[name] = [float(v) if np.isfinite(v) else None for v in vals]
    out["members"] = [f"{a.name}/seed{s}" for a, s in config.members]
    return out


def _host_blas(config: DynamicsConfig) -> threadpool_limits:
    """Limit the host BLAS threads of the per-layer SVDs (pruning and records).

    Layers up to 1024 wide take one thread: on a busy shared CPU, BLAS threads spinning for
    cores they cannot get made these small SVDs 20-50x slower than one thread.
    """
    threads = 1 if max(config.widths) <= 1024 else os.cpu_count() or 1
    return threadpool_limits(limits=threads, user_api="blas")


def _restore(
    out: str, config: DynamicsConfig, state: PyTree, ranks: np.ndarray, split: np.ndarray
) -> tuple[int, PyTree, list[dict[str, Any]], dict[str, tuple[np.ndarray, np.ndarray]] | None]:
    """``(last epoch, state, index entries, previous top vectors)`` of the run in ``out``.

    Without a checkpoint: ``(-1, state, [], None)``. With one, the index is rebuilt from the
    records of the committed epochs and ``ranks[M, L]`` / ``split[M, L]`` get the MP-pruned
    ranks and the split marks back.
    """
    ck = store.load_checkpoint(out, jax.eval_shape(lambda: state))
    if ck is None:
        return -1, state, [], None
    start, state = ck
    entries = store.rebuild_index(out, start)
    store.write_index(out, entries)
    last = store.read_epoch(out, start)
    paths = layer_paths(config)
    prev = {p: (last[f"{p}/U_top"], last[f"{p}/V_top"]) for p in paths if f"{p}/U_top" in last}
    for i, p in enumerate(paths):
        if f"{p}/rank" not in last:
            continue
        full = last[f"{p}/rank"] >= last[f"{p}/s"].shape[1]
        ranks[:, i] = np.where(full, ranks[:, i], last[f"{p}/rank"]).astype(np.int64)
        if f"{p}/split" in last:
            split[:, i] = last[f"{p}/split"] > 0
    return start, state, entries, prev or None


def train(
    config: DynamicsConfig,
    out: str,
    *,
    resume: bool = False,
    progress: bool | None = None,
    data: StudyData | None = None,
    record: bool = True,
    backend: str | None = None,
) -> list[dict[str, Any]]:
    """Train every member of ``config`` to ``config.epochs``, recording each epoch under ``out``.

    Args:
      config: a :class:`DynamicsConfig` (validated here, before anything trains).
      out: the run directory (created). An existing run is only touched with ``resume``.
      resume: continue the run in ``out`` from its checkpoint, up to ``config.epochs``
        (a larger ``epochs`` extends it; every other field must equal the stored config).
      progress: show a tqdm bar (default: only on a TTY).
      data: pre-loaded :class:`StudyData` (default: :func:`load_study_data`).
      record: record the spectra (``False`` only for timing the bare training: the epoch
        files then hold the metrics alone and MP pruning still runs).
      backend: SVD backend of :func:`mpjax.dynamics.record.decompose` (default: float64
        on CPU, float32 on an accelerator).

    Returns:
      The index entries (one per recorded epoch ``0..epochs``, with per-member metrics).

    Raises:
      ValueError: bad config, or an existing run without ``resume`` / with another config.
    """
    config = validate(config)
    backend = backend or default_backend()
    cfg_path = os.path.join(out, "config.json")
    if os.path.exists(cfg_path):
        if not resume:
            raise ValueError(
                f"--out {out}: a run already exists there; pass --resume to "
                "extend it or choose another directory"
            )
        _check_resume(out, config)
    os.makedirs(out, exist_ok=True)
    store.write_json(cfg_path, to_dict(config))
    data = load_study_data(config) if data is None else data
    n_steps = steps_per_epoch(config, len(data.y_train))
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    xt, yt = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
    l1, l2 = member_strengths(config)
    n_members = len(config.members)
    ranks = np.full((n_members, config.n_layers), np.iinfo(np.int32).max, np.int64)
    split = np.zeros((n_members, config.n_layers), bool)
    start, state, entries, prev = _restore(out, config, init_members(config, n_steps), ranks, split)
    params, opt = jax.tree_util.tree_map(jnp.asarray, state)
    todo = range(start + 1, config.epochs + 1)
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(todo, desc=f"dynamics {config.name}", disable=not show or not todo, leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        zeroed = np.zeros(ranks.shape, np.int64)
        if epoch == 0:
            train_m = np.full((n_members, 3), np.nan)
        else:
            idx = jnp.asarray(epoch_indices(config, len(data.y_train), epoch))
            params, opt, train_m = _epoch_fn(config, n_steps)(params, opt, x, y, idx, l1, l2)
            train_m = np.asarray(train_m)
            with _host_blas(config):
                params = hold_split_ranks(params, ranks, split, backend)
                params = mp_prune_members(config, params, epoch, ranks, backend, split, zeroed)
            jax.block_until_ready(params)
        t_train = time.perf_counter() - t0
        with _host_blas(config):
            arrays, prev = (
                record_epoch(config, params, ranks, prev, backend) if record else ({}, prev)
            )
        if record:
            for i, p in enumerate(layer_paths(config)):
                arrays[f"{p}/split"] = split[:, i].astype(np.float64)
                arrays[f"{p}/sparsified"] = zeroed[:, i].astype(np.float64)
        t_record = time.perf_counter() - t0 - t_train
        ce, acc = evaluate_members(config, params, xt, yt)
        reg = np.asarray(jax.vmap(params_penalty)(params, l1, l2))
        lr = float(config.lr * config.lr_decay ** (max(epoch - 1, 0) // config.lr_decay_every))
        metrics = {
            "train_loss": train_m[:, 0],
            "train_ce": train_m[:, 1],
            "train_acc": train_m[:, 2],
            "test_ce": ce,
            "test_acc": acc,
            "penalty": reg,
        }
        if record:
            metrics["params_effective"] = sum(
                arrays[f"{p}/params_effective"] for p in layer_paths(config)
            )
        arrays.update({f"metrics/{k}": np.asarray(v, np.float64) for k, v in metrics.items()})
        summary = {
            **_arms_summary(config, metrics),
            "lr": lr,
            "time_train_s": t_train,
            "time_record_s": t_record,
        }
        store.write_epoch(out, epoch, arrays, summary)
        store.save_checkpoint(out, epoch, (params, opt))
        entries.append(
            {**json.loads(json.dumps(summary)), "epoch": epoch, "file": store.epoch_file(epoch)}
        )
        store.write_index(out, entries)
        bar.set_postfix(acc=f"{np.mean(acc):.3f}")
    return entries
