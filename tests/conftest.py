"""Shared fixtures: seeded numpy generators and JAX keys, CPU only."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import hypothesis  # noqa: E402,F401  (imported before orbax: avoids a CPython 3.11.7 AST bug in pytest's summary)
import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy generator (the same stream in every test)."""
    return np.random.default_rng(0)


@pytest.fixture
def key() -> jax.Array:
    """A seeded JAX PRNG key."""
    return jax.random.key(0)


def small_vit(hidden_size: int, mlp_dim: int, seed: int = 0):
    """A 2-block, 32 px, 3-channel ViT config and random params with every leaf perturbed
    (non-zero biases, class token and LayerNorm shifts), for export and runtime tests."""
    from mpjax import tree
    from mpjax.models import convert, vit

    cfg = vit.config_for(
        "fmnist", image_size=32, patch_size=8, channels=3, hidden_size=hidden_size,
        num_heads=4, mlp_dim=mlp_dim, num_layers=2, num_classes=10,
    )  # fmt: skip
    p = convert.random_init(cfg, seed=seed)
    rng = np.random.default_rng(seed + 1)
    noisy = {k: v + 0.05 * rng.standard_normal(v.shape).astype(np.float32)
             for k, v in tree.flatten(p).items()}
    return cfg, tree.unflatten_like(p, noisy)
