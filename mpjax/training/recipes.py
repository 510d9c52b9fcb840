"""Training recipes: a named model, dataset and :class:`~mpjax.training.config.DistillConfig`.

:func:`train_and_evaluate` runs a recipe (flax's ``train_and_evaluate(config, workdir)``);
``mpjax train --recipe fmnist-vit --out DIR`` (:mod:`mpjax.cli.train`) is its command line.
:data:`DISTILL_CONFIGS` holds the short distillation settings used after pruning each
recipe's model (see `docs/method/distillation.md`), and :func:`vit_apply_fn` the cached
apply function every ViT recipe trains and evaluates with.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mpjax import data
from mpjax.models import vit
from mpjax.training.config import DistillConfig
from mpjax.training.loop import train

__all__ = [
    "DISTILL_CONFIGS",
    "RECIPES",
    "Recipe",
    "train_and_evaluate",
    "vit_apply_fn",
]


@dataclasses.dataclass
class Recipe:
    """A named training setup."""

    name: str  # recipe name, e.g. "fmnist-vit"
    model: str  # mpjax.models.vit.config_for name
    dataset: str  # mpjax.data dataset name ("fashion-mnist", "mnist")
    train: DistillConfig  # optimiser, schedule, augmentation, loss (no teacher: plain CE_ls)
    init_seed: int = 0  # parameter init key


RECIPES: dict[str, Recipe] = {
    # AdamW + warmup/cosine, label smoothing 0.1, random crop (pad 1) + flips;
    # 20 epochs, ~12 CPU-minutes.
    "fmnist-vit": Recipe(
        name="fmnist-vit",
        model="fmnist",
        dataset="fashion-mnist",
        train=DistillConfig(
            learning_rate=2e-3, weight_decay=0.05, warmup_steps=400, batch_size=128,
            num_epochs=20, grad_clip=1.0, label_smoothing=0.1, alpha=0.0, augment=True,
            crop_padding=1, flip=True, log_every=100, checkpoint_every=1000,
        ),
    ),
}  # fmt: skip


#: Short distillation settings for a pruned model of each recipe (the demo's fine-tuning).
#: Shipped ViT (dense 88.74%), per-layer magnitude masks, 200 steps (~40 s on 2 busy cores):
#: 50% sparsity 83.44% -> 88.74%; 70% sparsity 31.78% -> 87.09% (test accuracy).
DISTILL_CONFIGS: dict[str, DistillConfig] = {
    "fmnist-vit": DistillConfig(
        learning_rate=5e-4, weight_decay=0.01, warmup_steps=30, num_steps=200, batch_size=128,
        alpha=0.5, tau=2.0, label_smoothing=0.1, log_every=50,
    ),
}  # fmt: skip


@functools.cache
def vit_apply_fn(config: vit.ViTConfig, tome_r: int = 0) -> Callable[..., jax.Array]:
    """The apply function of ``ViT(config)``, cached per config.

    Cached so that jitted steps and evaluations built on it compile once per config.

    Args:
      config: the ViT's shape.
      tome_r: tokens merged per block by ToMe (0: no merging).

    Returns:
      ``apply_fn(params, images, train=False) -> logits``; ``train`` is ignored (the ViT has
      no dropout or batch statistics).
    """
    model = vit.ViT(config)

    def apply_fn(params, images, train=False):
        del train  # the ViT has no dropout / batch statistics
        return model.apply({"params": params}, images, tome_r=tome_r)

    return apply_fn


def train_and_evaluate(
    recipe: Recipe, workdir: str | Path, data_dir: str | None = None
) -> tuple[Any, dict]:
    """Train ``recipe`` from scratch (or resume in ``workdir``) and evaluate on the test split.

    Args:
      recipe: what to train (an entry of :data:`RECIPES`, possibly with changed settings).
      workdir: the run's folder (:func:`~mpjax.training.loop.train` resumes from it).
      data_dir: dataset folder; ``None`` searches the default places (:mod:`mpjax.data`).

    Returns:
      ``(params, result)``; result holds ``recipe``, ``model``, ``vit_config``, ``dataset``,
      ``test_accuracy``, ``train_seconds``, ``steps``, ``train_config``, ``init_seed``,
      ``num_params``, ``machine`` and ``jax``.
    """
    cfg = vit.config_for(recipe.model)
    train_data = data.load_idx_dataset(recipe.dataset, "train", data_dir)
    test_data = data.load_idx_dataset(recipe.dataset, "test", data_dir)
    params = vit.init_params(cfg, jax.random.PRNGKey(recipe.init_seed))
    apply_fn = vit_apply_fn(cfg)
    params, summary = train(
        params, apply_fn, train_data, recipe.train, workdir, eval_data=test_data
    )
    result = {
        "recipe": recipe.name,
        "model": recipe.model,
        "vit_config": dataclasses.asdict(cfg),
        "dataset": recipe.dataset,
        "test_accuracy": summary["test_accuracy"],
        "train_seconds": summary["seconds"],
        "steps": summary["steps"],
        "train_config": dataclasses.asdict(recipe.train),
        "init_seed": recipe.init_seed,
        "num_params": int(sum(np.size(x) for x in jax.tree.leaves(params))),
        "machine": f"{platform.processor() or platform.machine()}, {jax.devices()[0].platform}",
        "jax": jax.__version__,
    }
    return params, result
