"""Training recipes, ``mpjax train``, and the shipped Fashion-MNIST ViT.

A recipe names a model, a dataset and a :class:`mpjax.training.loop.Config`;
:func:`train_and_evaluate` runs it (flax's ``train_and_evaluate(config, workdir)``)
and ``mpjax train --recipe fmnist-vit --out DIR`` is its command line. The result is
written as ``DIR/params`` (orbax, :func:`mpjax.checkpoint.restore_params`),
``DIR/<recipe>.npz`` (big_vision layout: ``"Transformer/encoderblock_0/.../kernel"`` keys)
and ``DIR/result.json`` (test accuracy, training time, config, command).

The package ships one such model, ``mpjax/assets/fmnist_vit.npz`` + ``fmnist_vit.json``,
loaded by :func:`load_shipped_model`: ``vit.config_for("fmnist")`` (7x7 patches, width 64,
4 blocks, 139k parameters) trained by ``mpjax train --recipe fmnist-vit`` (20 epochs, seed 0),
test accuracy 88.74% on the 10k Fashion-MNIST test images; it took 11.5 CPU-minutes
(23.6 min wall on 2 cores shared with other jobs). Evaluating the test set takes ~3 s.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import platform
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mpjax import checkpoint, data, tree
from mpjax.models import vit
from mpjax.training import loop as distill

#: Directory of the shipped model files.
ASSETS = Path(__file__).resolve().parents[1] / "assets"
SHIPPED_NAME = "fmnist_vit"


@dataclasses.dataclass
class Recipe:
    """A named training setup."""

    name: str  # recipe name, e.g. "fmnist-vit"
    model: str  # mpjax.models.vit.config_for name
    dataset: str  # mpjax.data dataset name ("fashion-mnist", "mnist")
    train: distill.Config  # optimiser, schedule, augmentation, loss (no teacher: plain CE_ls)
    init_seed: int = 0  # parameter init key


RECIPES: dict[str, Recipe] = {
    # AdamW + warmup/cosine, label smoothing 0.1, random crop (pad 1) + flips; 20 epochs, ~12 CPU-minutes.
    "fmnist-vit": Recipe(
        name="fmnist-vit",
        model="fmnist",
        dataset="fashion-mnist",
        train=distill.Config(
            learning_rate=2e-3, weight_decay=0.05, warmup_steps=400, batch_size=128,
            num_epochs=20, grad_clip=1.0, label_smoothing=0.1, alpha=0.0, augment=True,
            crop_padding=1, flip=True, log_every=100, checkpoint_every=1000,
        ),
    ),
}  # fmt: skip


#: Short distillation settings for a pruned model of each recipe (the demo's fine-tuning).
#: Shipped ViT (dense 88.74%), per-layer magnitude masks, 200 steps (~40 s on 2 busy cores):
#: 50% sparsity 83.44% -> 88.74%; 70% sparsity 31.78% -> 87.09% (test accuracy).
DISTILL_CONFIGS: dict[str, distill.Config] = {
    "fmnist-vit": distill.Config(
        learning_rate=5e-4, weight_decay=0.01, warmup_steps=30, num_steps=200, batch_size=128,
        alpha=0.5, tau=2.0, label_smoothing=0.1, log_every=50,
    ),
}  # fmt: skip


@functools.cache
def vit_apply_fn(config: vit.ViTConfig, tome_r: int = 0):
    """``apply_fn(params, images, train) -> logits`` of ``ViT(config)`` (cached per config,
    so jitted steps built on it compile once)."""
    model = vit.ViT(config)

    def apply_fn(params, images, train=False):
        del train  # the ViT has no dropout / batch statistics
        return model.apply({"params": params}, images, tome_r=tome_r)

    return apply_fn


def save_npz(path: str | Path, params: Any) -> Path:
    """Params as a compressed big_vision-style ``.npz`` (``"a/b/kernel"`` keys, float32)."""
    path = Path(path)
    flat = {k: np.asarray(v, np.float32) for k, v in tree.flatten(params).items()}
    np.savez_compressed(path, **flat)
    return path


def load_npz(path: str | Path) -> dict:
    """Nested Linen params from a big_vision-style ``.npz`` (see :func:`save_npz`)."""
    from mpjax.models import convert

    return convert.unflatten_dict(convert.read_npz(path))


def train_and_evaluate(recipe: Recipe, workdir: str | Path, data_dir: str | None = None):
    """Train ``recipe`` from scratch (or resume in ``workdir``) and evaluate on the test split.

    Returns:
      ``(params, result)``; result holds ``test_accuracy``, ``train_seconds`` and the config.
    """
    cfg = vit.config_for(recipe.model)
    train_data = data.load_idx_dataset(recipe.dataset, "train", data_dir)
    test_data = data.load_idx_dataset(recipe.dataset, "test", data_dir)
    params = vit.init_params(cfg, jax.random.PRNGKey(recipe.init_seed))
    apply_fn = vit_apply_fn(cfg)
    params, summary = distill.fit(
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


def main_train(argv: list[str] | None = None) -> int:
    """``mpjax train --recipe NAME --out DIR [--epochs E] [--steps N] [--seed S]``."""
    parser = argparse.ArgumentParser(
        prog="mpjax train",
        description="Train a model from a named recipe; writes DIR/params (orbax), "
        "DIR/<recipe>.npz and DIR/result.json (test accuracy, time).",
    )
    parser.add_argument("--recipe", default="fmnist-vit", choices=sorted(RECIPES))
    parser.add_argument("--out", required=True, help="output directory (resumes if it has a run)")
    parser.add_argument("--epochs", type=float, help="override the recipe's epochs")
    parser.add_argument("--steps", type=int, help="override with a number of steps")
    parser.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    parser.add_argument("--lr", type=float, help="override the recipe's peak learning rate")
    parser.add_argument("--seed", type=int, help="data-order / augmentation seed")
    parser.add_argument("--data-dir", help="dataset directory (default: see mpjax.data)")
    args = parser.parse_args(argv)
    recipe = RECIPES[args.recipe]
    changes = {
        k: v
        for k, v in [
            ("num_epochs", args.epochs),
            ("num_steps", args.steps),
            ("batch_size", args.batch_size),
            ("learning_rate", args.lr),
            ("seed", args.seed),
        ]
        if v is not None
    }
    recipe = dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, **changes))
    out = Path(args.out)
    params, result = train_and_evaluate(recipe, out / "run", args.data_dir)
    result["command"] = "mpjax train " + " ".join(sys.argv[2:] if argv is None else argv)
    name = recipe.name.replace("-", "_")
    checkpoint.save_params(out / "params", params, meta=result)
    save_npz(out / f"{name}.npz", params)
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(
        f"{recipe.name}: test accuracy {result['test_accuracy']:.4f} after "
        f"{result['steps']} steps in {result['train_seconds']:.0f} s -> {out}"
    )
    return 0


def load_shipped_model() -> tuple[dict, vit.ViTConfig, dict]:
    """The Fashion-MNIST ViT shipped with mpjax.

    Returns:
      ``(params, config, info)``: Linen params (numpy leaves), the :class:`ViTConfig`
      (use :func:`vit_apply_fn` to run it; inputs as :func:`mpjax.training.loop.prepare_images`),
      and the training record (test accuracy, recipe, seed, time, command).

    Raises:
      ValueError: if the asset files are missing or do not match the recorded config.
    """
    npz, meta = ASSETS / f"{SHIPPED_NAME}.npz", ASSETS / f"{SHIPPED_NAME}.json"
    if not npz.is_file() or not meta.is_file():
        raise ValueError(f"{ASSETS}: shipped model files missing; reinstall mpjax.")
    info = json.loads(meta.read_text())
    config = vit.ViTConfig(**info["vit_config"])
    params = load_npz(npz)
    checkpoint.check_shapes(
        {p: [list(np.shape(x)), "float32"] for p, x in tree.flatten(params).items()},
        vit.abstract_params(config),
        str(npz),
    )
    return params, config, info
