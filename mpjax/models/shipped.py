"""The Fashion-MNIST ViTs shipped with mpjax (``mpjax/assets/<stem>.npz`` + ``.json``).

Two models are shipped, named by their :func:`mpjax.models.load_source` name
(:data:`SHIPPED_MODELS`): ``shipped`` (``fmnist_vit``, the default everywhere) and
``shipped-wide`` (``fmnist_vit_wide``: ``vit.config_for("fmnist-wide")``, width 128, 6 blocks,
MLP 512, 1,199,882 parameters, trained by ``mpjax train --recipe fmnist-vit-wide``: 2808 steps
of batch 128, test accuracy 86.75%, 81 min wall on 2 busy CPU cores; its ``.json`` is the
training record).

The small model is ``vit.config_for("fmnist")`` (7x7 patches, width 64, 4 blocks, 139k
parameters) trained by ``mpjax train --recipe fmnist-vit`` (20 epochs, seed 0): test accuracy
88.74% on the 10k Fashion-MNIST test images; it took 11.5 CPU-minutes (23.6 min wall on 2
cores shared with other jobs). Evaluating the test set takes ~3 s. The ``.npz`` uses the
big_vision layout (``"Transformer/encoderblock_0/.../kernel"`` keys, float32); the ``.json``
is the training record written by ``mpjax train``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mpjax import checkpoint, tree
from mpjax.models import vit
from mpjax.npz import read_npz, unflatten_dict

__all__ = [
    "ASSETS",
    "SHIPPED_MODELS",
    "SHIPPED_NAME",
    "load_shipped_model",
]

#: Directory of the shipped model files (``mpjax/assets``).
ASSETS = Path(__file__).resolve().parents[1] / "assets"
#: Stem of the default shipped model's ``.npz`` and ``.json`` files.
SHIPPED_NAME = "fmnist_vit"
#: Source name -> file stem of every shipped model.
SHIPPED_MODELS = {"shipped": SHIPPED_NAME, "shipped-wide": "fmnist_vit_wide"}


def load_shipped_model(name: str = "shipped") -> tuple[dict, vit.ViTConfig, dict]:
    """A Fashion-MNIST ViT shipped with mpjax (by default the small one).

    Args:
      name: a key of :data:`SHIPPED_MODELS` (``"shipped"`` or ``"shipped-wide"``).

    Returns:
      ``(params, config, info)``: Linen params (numpy leaves), the :class:`ViTConfig`
      (run it with :func:`mpjax.training.vit_apply_fn` on inputs from
      :func:`mpjax.training.prepare_images`), and the training record (test
      accuracy, recipe, seed, time, command).

    Raises:
      ValueError: for an unknown name, or if the asset files are missing, unreadable or do
        not match the recorded config.

    Examples:
      >>> params, config, info = load_shipped_model()
      >>> config.hidden_size, info["recipe"]
      (64, 'fmnist-vit')
    """
    if name not in SHIPPED_MODELS:
        raise ValueError(f"shipped model {name!r}: choose one of {tuple(SHIPPED_MODELS)}.")
    stem = SHIPPED_MODELS[name]
    npz, meta = ASSETS / f"{stem}.npz", ASSETS / f"{stem}.json"
    if not npz.is_file() or not meta.is_file():
        raise ValueError(f"{ASSETS}: shipped model files missing; reinstall mpjax.")
    info = json.loads(meta.read_text())
    config = vit.ViTConfig(**info["vit_config"])
    params = unflatten_dict(read_npz(npz, what=f"the shipped model {name!r}"))
    checkpoint.check_shapes(
        {p: [list(np.shape(x)), "float32"] for p, x in tree.flatten(params).items()},
        vit.abstract_params(config),
        str(npz),
    )
    return params, config, info
