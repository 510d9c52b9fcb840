"""The small ViT shared by the tests of ``mpjax.models`` (a plain module, not a conftest:
``from vit_files import CFG, logits``; the ``params`` / ``images`` fixtures built from it live
in ``tests/models/conftest.py``)."""

import jax
import numpy as np

from mpjax.models import sources, vit

#: 16 px, 4 px patches (17 tokens), 2 blocks of width 32, 5 classes.
CFG = vit.ViTConfig(
    patch_size=4, hidden_size=32, num_layers=2, num_heads=4, mlp_dim=64,
    image_size=16, channels=3, num_classes=5,
)  # fmt: skip


def perturbed_params():
    """Random params of :data:`CFG` with non-trivial LayerNorms, biases, cls and position table."""
    p = sources.random_init(CFG, seed=1)
    rng = np.random.default_rng(2)
    return jax.tree.map(lambda x: x + 0.1 * rng.standard_normal(x.shape).astype(np.float32), p)


def sample_images():
    """Two seeded ``16 x 16 x 3`` Gaussian images."""
    return np.random.default_rng(3).standard_normal((2, 16, 16, 3)).astype(np.float32)


def logits(p, x, cfg=CFG):
    """The Flax ViT's logits as a numpy array."""
    return np.asarray(vit.ViT(cfg).apply({"params": p}, x))
