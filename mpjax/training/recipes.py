"""Training recipes: a named model, dataset and :class:`~mpjax.training.config.DistillConfig`.

:func:`train_and_evaluate` runs a recipe (flax's ``train_and_evaluate(config, workdir)``);
``mpjax train --recipe NAME --out DIR`` (:mod:`mpjax.cli.train`) is its command line.
Two recipes: ``fmnist-vit`` (the shipped ViT) and ``fmnist-mlp`` (the fully connected ReLU
net of the theory, :class:`~mpjax.models.mlp.MLP`, which ``mpjax certify`` reads).
:data:`DISTILL_CONFIGS` holds the short distillation settings used after pruning each
recipe's model (see `docs/method/distillation.md`); :func:`vit_apply_fn` and
:func:`mlp_apply_fn` are the cached apply functions the recipes train and evaluate with.
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
from mpjax.models import mlp, vit
from mpjax.training.config import DistillConfig
from mpjax.training.loop import train

__all__ = [
    "DISTILL_CONFIGS",
    "RECIPES",
    "Recipe",
    "mlp_apply_fn",
    "train_and_evaluate",
    "vit_apply_fn",
]


@dataclasses.dataclass
class Recipe:
    """A named training setup."""

    name: str  # recipe name, e.g. "fmnist-vit"
    model: str  # "mlp" or a mpjax.models.vit.config_for name
    dataset: str  # mpjax.data dataset name ("fashion-mnist", "mnist")
    train: DistillConfig  # optimiser, schedule, augmentation, loss (no teacher: plain CE_ls)
    init_seed: int = 0  # parameter init key
    widths: tuple[int, ...] = ()  # layer widths of model "mlp", input first
    activation: str = "relu"  # activation of model "mlp" (1-Lipschitz, as certify assumes)


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
    # The larger shipped ViT (width 128, 6 blocks, MLP 512, 1.2M params), same optimiser and
    # augmentation as fmnist-vit, lr 1e-3; 6 epochs (2808 steps), ~12 min on 2 idle CPU cores.
    "fmnist-vit-wide": Recipe(
        name="fmnist-vit-wide",
        model="fmnist-wide",
        dataset="fashion-mnist",
        train=DistillConfig(
            learning_rate=1e-3, weight_decay=0.05, warmup_steps=400, batch_size=128,
            num_epochs=6, grad_clip=1.0, label_smoothing=0.1, alpha=0.0, augment=True,
            crop_padding=1, flip=True, log_every=100, checkpoint_every=500,
        ),
    ),
    # The fully connected ReLU net of the certificates, [784, 1000, 1000, 10] (the papers'
    # precursor net), N(0, 1/fan_in) init, pixels / 255; a brief AdamW run (not the papers'
    # SGD protocol): 2 epochs, ~88% test accuracy in ~20 s on 2 CPU cores (1 epoch: ~86%).
    "fmnist-mlp": Recipe(
        name="fmnist-mlp",
        model="mlp",
        dataset="fashion-mnist",
        widths=(784, 1000, 1000, 10),
        train=DistillConfig(
            learning_rate=1e-3, weight_decay=1e-4, warmup_steps=100, batch_size=128,
            num_epochs=2, grad_clip=1.0, label_smoothing=0.0, alpha=0.0, augment=False,
            log_every=100, checkpoint_every=500,
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
    # The larger shipped ViT: the same short budget (200 steps of batch 128, ~0.4 epoch).
    "fmnist-vit-wide": DistillConfig(
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


@functools.cache
def mlp_apply_fn(widths: tuple[int, ...], activation: str = "relu") -> Callable[..., jax.Array]:
    """The apply function of ``MLP(widths, activation)``, cached per shape.

    Args:
      widths: ``(d_0, ..., d_L)``; images are flattened to ``d_0`` features.
      activation: an :data:`mpjax.models.mlp.ACTIVATIONS` name.

    Returns:
      ``apply_fn(params, images, train=False) -> logits`` (``train`` is ignored).
    """
    model = mlp.MLP(tuple(widths), activation)

    def apply_fn(params, images, train=False):
        del train  # no dropout / batch statistics
        return model.apply({"params": params}, images)

    return apply_fn


def _model(recipe: Recipe) -> tuple[Any, Callable[..., jax.Array], dict]:
    """``(initial params, apply_fn, record fields)`` of a recipe's model."""
    key = jax.random.PRNGKey(recipe.init_seed)
    if recipe.model == "mlp":
        if len(recipe.widths) < 2:
            raise ValueError(f"widths: recipe {recipe.name!r} needs >= 2 MLP widths.")
        params = mlp.init(recipe.widths, key, recipe.activation)
        record = {
            "mlp": {"widths": list(recipe.widths), "activation": recipe.activation},
            "activation": recipe.activation,  # what mpjax certify reads
            "normalize": "unit",  # pixels / 255 (prepare_images)
        }
        return params, mlp_apply_fn(tuple(recipe.widths), recipe.activation), record
    cfg = vit.config_for(recipe.model)
    params = vit.init_params(cfg, key)
    return params, vit_apply_fn(cfg), {"vit_config": dataclasses.asdict(cfg)}


def train_and_evaluate(
    recipe: Recipe, workdir: str | Path, data_dir: str | None = None
) -> tuple[Any, dict]:
    """Train ``recipe`` from scratch (or resume in ``workdir``) and evaluate on the test split.

    Args:
      recipe: what to train (an entry of :data:`RECIPES`, possibly with changed settings).
      workdir: the run's folder (:func:`~mpjax.training.loop.train` resumes from it).
      data_dir: dataset folder; ``None`` searches the default places (:mod:`mpjax.data`).

    Returns:
      ``(params, result)``; result holds ``recipe``, ``model``, ``vit_config`` (a ViT) or
      ``mlp``, ``activation`` and ``normalize`` (an MLP), ``dataset``, ``test_accuracy``,
      ``train_seconds``, ``steps``, ``train_config``, ``init_seed``, ``num_params``,
      ``machine`` and ``jax``.
    """
    params, apply_fn, record = _model(recipe)
    train_data = data.load_idx_dataset(recipe.dataset, "train", data_dir)
    test_data = data.load_idx_dataset(recipe.dataset, "test", data_dir)
    params, summary = train(
        params, apply_fn, train_data, recipe.train, workdir, eval_data=test_data
    )
    result = {
        "recipe": recipe.name,
        "model": recipe.model,
        **record,
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
