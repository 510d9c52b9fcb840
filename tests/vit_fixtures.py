"""A small perturbed ViT shared by the export and torch-runtime tests (a plain module, not a
conftest: ``from vit_fixtures import small_vit``)."""

import numpy as np


def small_vit(hidden_size: int, mlp_dim: int, seed: int = 0):
    """A 2-block, 32 px, 3-channel ViT config and random params with every leaf perturbed
    (non-zero biases, class token and LayerNorm shifts), for export and runtime tests."""
    from mpjax import tree
    from mpjax.models import random_init, vit

    cfg = vit.config_for(
        "fmnist", image_size=32, patch_size=8, channels=3, hidden_size=hidden_size,
        num_heads=4, mlp_dim=mlp_dim, num_layers=2, num_classes=10,
    )  # fmt: skip
    p = random_init(cfg, seed=seed)
    rng = np.random.default_rng(seed + 1)
    noisy = {k: v + 0.05 * rng.standard_normal(v.shape).astype(np.float32)
             for k, v in tree.flatten(p).items()}
    return cfg, tree.unflatten_like(p, noisy)
