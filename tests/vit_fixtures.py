"""A small perturbed ViT shared by the export and torch-runtime tests (a plain module, not a
conftest: ``from vit_fixtures import small_vit, small_vit_fixtures``)."""

import functools

import numpy as np
import pytest


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
    noisy = {
        k: v + 0.05 * rng.standard_normal(v.shape).astype(np.float32)
        for k, v in tree.flatten(p).items()
    }
    return cfg, tree.unflatten_like(p, noisy)


def small_vit_fixtures(hidden_size: int, mlp_dim: int):
    """Module-scoped ``cfg`` and ``params`` fixtures of one :func:`small_vit`, built once.

    Use at module level: ``cfg, params = small_vit_fixtures(hidden_size=96, mlp_dim=192)``.
    """
    build = functools.cache(lambda: small_vit(hidden_size=hidden_size, mlp_dim=mlp_dim))

    @pytest.fixture(scope="module", name="cfg")
    def cfg():
        """The :class:`mpjax.models.vit.ViTConfig` of the small ViT."""
        return build()[0]

    @pytest.fixture(scope="module", name="params")
    def params():
        """The perturbed params of the small ViT."""
        return build()[1]

    return cfg, params


def write_idx_and_vit(root, images: int = 96, train: int = 64):
    """A tiny IDX dataset (class-dependent brightness, so there is something to learn) and a
    random ``fmnist`` ViT ``.npz`` in ``root``; returns the path of the ``.npz``."""
    from mpjax import data, npz, tree
    from mpjax.models import random_init, vit

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, images).astype(np.uint8)
    pixels = (rng.random((images, 28, 28)) * 80 + labels[:, None, None] * 17).astype(np.uint8)
    for split, sl in (("train", slice(0, train)), ("t10k", slice(train, images))):
        data.write_idx(root / f"{split}-images-idx3-ubyte.gz", pixels[sl])
        data.write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels[sl])
    src = root / "vit.npz"
    npz.write_npz(src, tree.flatten(random_init(vit.config_for("fmnist"), seed=1)))
    return src
