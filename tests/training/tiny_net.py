"""A tiny model and data set shared by the training tests (and the data-parallel subprocess).

Not a test module: ``tests/training`` is on ``sys.path`` under pytest's default import mode,
so the test modules (and the subprocess of ``test_loop``) import these helpers by name.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mpjax.training import DistillConfig


class TinyNet(nn.Module):
    """A 2-layer MLP on [B, H, W, C] images."""

    hidden: int = 16
    classes: int = 3

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(self.classes)(nn.relu(nn.Dense(self.hidden)(x)))


MODEL = TinyNet()


def apply_fn(params, images, train):
    """``apply_fn(params, images, train) -> logits`` of :data:`MODEL`."""
    return MODEL.apply({"params": params}, images, train)


def tiny_data(n: int = 96, seed: int = 0):
    """Three classes of 6x6 uint8 images: a bright row per class plus noise."""
    r = np.random.default_rng(seed)
    labels = r.integers(0, 3, n).astype(np.int32)
    images = r.integers(0, 60, (n, 6, 6)).astype(np.uint8)
    images[np.arange(n), labels * 2, :] = 220
    return images, labels


def init_params(seed: int = 0):
    """Fresh :data:`MODEL` params for 6x6x1 images."""
    return MODEL.init(jax.random.PRNGKey(seed), jnp.zeros((1, 6, 6, 1)))["params"]


def half_masks(params, seed: int = 1):
    """Random masks keeping about half of every kernel (biases not pruned: ``None``)."""
    r = np.random.default_rng(seed)
    return jax.tree_util.tree_map_with_path(
        lambda p, x: (
            jnp.asarray(r.random(x.shape) < 0.5) if "kernel" in jax.tree_util.keystr(p) else None
        ),
        params,
    )


def small_config(**kw) -> DistillConfig:
    """A few quick steps on the tiny data, logging every step, no progress bar."""
    base = dict(
        learning_rate=3e-2,
        warmup_steps=2,
        batch_size=16,
        num_steps=8,
        log_every=1,
        progress=False,
        weight_decay=0.1,
    )
    return DistillConfig(**{**base, **kw})
