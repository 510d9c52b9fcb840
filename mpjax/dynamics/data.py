"""Data of the dynamics study: Fashion-MNIST or a low-rank teacher, and the minibatch order.

The synthetic teacher labels Gaussian inputs ``x ~ N(0, I_d)`` by
``argmax(T2 relu(T1 x + b1))`` with ``T1`` of rank ``teacher_rank``: the labels depend on a
``teacher_rank``-dimensional projection of ``x`` only, so a trained first layer needs a few
spikes and everything else is removable noise, which makes the bulk collapse visible in a
CPU-sized run.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mpjax.data import epoch_permutation, load_fashion_mnist, normalize
from mpjax.dynamics.config import DynamicsConfig

#: Seed of the synthetic teacher and its samples (shared by every member of a run).
TEACHER_SEED = 1234


class StudyData(NamedTuple):
    """Flattened float32 inputs ``[n, d_0]`` and int32 labels ``[n]``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def teacher_data(config: DynamicsConfig) -> StudyData:
    """Labels ``argmax(T2 relu(T1 x))`` of Gaussian inputs, ``T1`` of rank ``teacher_rank``."""
    rng = np.random.default_rng(TEACHER_SEED)
    d, h, r, k = config.widths[0], config.teacher_hidden, config.teacher_rank, config.widths[-1]
    n_tr, n_te = config.n_train or 8192, config.n_test or 2048
    T1 = rng.normal(size=(h, r)) @ rng.normal(size=(r, d)) / np.sqrt(r * d)
    b1 = rng.normal(size=h) * 0.1
    T2 = rng.normal(size=(k, h)) / np.sqrt(h)
    x = rng.normal(size=(n_tr + n_te, d)).astype(np.float32)
    y = np.argmax(np.maximum(x @ T1.T + b1, 0) @ T2.T, axis=1).astype(np.int32)
    return StudyData(x[:n_tr], y[:n_tr], x[n_tr:], y[n_tr:])


def max_norm_scale(x_train: np.ndarray, x_test: np.ndarray, max_norm: float) -> float:
    """The factor ``c`` that makes ``max_i ||c x_i||_2 = max_norm`` over train and test inputs.

    Args:
      x_train: flattened inputs ``[n, d]`` (pixels in [0, 1]).
      x_test: flattened inputs ``[n', d]``.
      max_norm: the target largest l2 norm (0.05 in the papers' scaling experiment).
    """
    largest = max(float(np.linalg.norm(x, axis=1).max()) for x in (x_train, x_test) if len(x))
    if largest <= 0:
        raise ValueError("inputs: every input is zero; max-norm scaling is undefined")
    return max_norm / largest


def load_study_data(config: DynamicsConfig) -> StudyData:
    """The run's data: Fashion-MNIST (standardised or max-norm scaled), or the teacher.

    Under ``input_scaling="max_norm"`` the pixels ``x / 255`` of the train and test inputs
    used are multiplied by one factor (:func:`max_norm_scale`), so the input of largest l2
    norm has norm ``input_max_norm``; otherwise they are standardised by the training
    mean/std.

    Args:
      config: the run's config (``dataset``, ``n_train``, ``n_test``, teacher fields).

    Returns:
      A :class:`StudyData` with flattened float32 inputs and int32 labels.
    """
    if config.dataset == "teacher":
        d = teacher_data(config)
        if config.input_scaling != "max_norm":
            return d
        c = np.float32(max_norm_scale(d.x_train, d.x_test, config.input_max_norm))
        return StudyData(d.x_train * c, d.y_train, d.x_test * c, d.y_test)
    xtr, ytr = load_fashion_mnist("train")
    xte, yte = load_fashion_mnist("test")
    xtr, ytr = xtr[: config.n_train], ytr[: config.n_train]
    xte, yte = xte[: config.n_test], yte[: config.n_test]
    if config.input_scaling == "max_norm":
        ftr, fte = (normalize(x, "unit").reshape(len(x), -1) for x in (xtr, xte))
        c = np.float32(max_norm_scale(ftr, fte, config.input_max_norm))
        return StudyData(ftr * c, ytr.astype(np.int32), fte * c, yte.astype(np.int32))
    if config.input_scaling == "unit":
        ftr, fte = (normalize(x, "unit").reshape(len(x), -1) for x in (xtr, xte))
        return StudyData(ftr, ytr.astype(np.int32), fte, yte.astype(np.int32))
    mean, std = float(xtr.mean()) / 255.0, float(xtr.std()) / 255.0
    flat = lambda x: normalize(x, "standard", mean, std).reshape(len(x), -1)  # noqa: E731
    return StudyData(flat(xtr), ytr.astype(np.int32), flat(xte), yte.astype(np.int32))


def steps_per_epoch(config: DynamicsConfig, n_train: int) -> int:
    """Minibatches per epoch (the incomplete last one is dropped)."""
    return n_train // config.batch_size


def epoch_indices(config: DynamicsConfig, n_train: int, epoch: int) -> np.ndarray:
    """Minibatch indices ``[steps, members, batch]``: member order from ``(seed, epoch)``."""
    n_steps, B = steps_per_epoch(config, n_train), config.batch_size
    perms = [epoch_permutation(n_train, seed, epoch)[: n_steps * B] for _, seed in config.members]
    return np.stack(perms).reshape(len(perms), n_steps, B).transpose(1, 0, 2).astype(np.int32)
