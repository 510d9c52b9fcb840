"""``mpjax train --recipe NAME --out DIR``: train a model from a named recipe.

Checks ``--out`` first (:func:`mpjax.cli.output.prepare_out`: an empty or new directory, or
an earlier ``mpjax train`` run, which then resumes), runs
:func:`mpjax.training.recipes.train_and_evaluate` in ``DIR/run`` (periodic checkpoints;
a killed run resumes bit for bit) and writes ``DIR/params`` (orbax,
:func:`mpjax.checkpoint.restore_params`; what ``mpjax prune`` and ``mpjax certify`` read),
``DIR/<recipe>.npz`` (flat ``"Transformer/encoderblock_0/.../kernel"`` or
``"Dense_0/kernel"`` keys, float32) and ``DIR/result.json`` (test accuracy, training time,
config, command). Recipes: ``fmnist-vit`` (the shipped ViT) and ``fmnist-mlp`` (the fully
connected net of the certificates).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from mpjax import checkpoint, tree
from mpjax.cli import cluster
from mpjax.cli.output import add_overwrite_flag, cleaned_up_on_failure, prepare_out
from mpjax.npz import write_npz
from mpjax.training import RECIPES, train_and_evaluate


def build_parser() -> argparse.ArgumentParser:
    """The ``mpjax train`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="mpjax train",
        description="Train a model from a named recipe; writes DIR/params (orbax), "
        "DIR/<recipe>.npz and DIR/result.json (test accuracy, time).",
    )
    parser.add_argument(
        "--recipe", default="fmnist-vit", choices=sorted(RECIPES),
        help="fmnist-vit: the shipped ViT; fmnist-mlp: the [784, 1000, 1000, 10] ReLU net "
        "that `mpjax certify` reads",
    )  # fmt: skip
    parser.add_argument("--out", required=True, help="output directory (resumes if it has a run)")
    add_overwrite_flag(parser)
    parser.add_argument("--epochs", type=float, help="override the recipe's epochs")
    parser.add_argument("--steps", type=int, help="override with a number of steps")
    parser.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    parser.add_argument("--lr", type=float, help="override the recipe's peak learning rate")
    parser.add_argument("--seed", type=int, help="data-order / augmentation seed")
    parser.add_argument("--data-dir", help="dataset directory (default: see mpjax.data)")
    cluster.add_cluster_arguments(parser)
    return parser


def _check(changes: dict) -> None:
    """Check the overrides before any work, naming the flag at fault."""
    flags = {"num_epochs": "--epochs", "num_steps": "--steps", "batch_size": "--batch-size",
             "learning_rate": "--lr"}  # fmt: skip
    for key, flag in flags.items():
        if key in changes and not changes[key] > 0:
            raise ValueError(f"{flag} {changes[key]}: must be > 0.")


def _earlier_run(out: Path) -> bool:
    """An ``mpjax train`` output written before the run marker existed."""
    return (out / "run" / "checkpoints").is_dir() or (out / "result.json").is_file()


def main(argv: list[str] | None = None) -> int:
    """Train the recipe with the flags' overrides, write the model and its record, print a line.

    Args:
      argv: the arguments after ``mpjax train``; ``None`` reads ``sys.argv[2:]``.

    Returns:
      0 on success.
    """
    args = build_parser().parse_args(argv)
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
    _check(changes)
    recipe = dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, **changes))
    node = cluster.init_from_args(args, batch_size=recipe.train.batch_size)
    with cluster.private_out(args, node):  # only process 0 writes --out
        return _train(args, argv, recipe)


def _train(args: argparse.Namespace, argv: list[str] | None, recipe) -> int:
    """Train ``recipe`` into ``args.out`` (see :func:`main`)."""
    out = prepare_out(args.out, command="train", overwrite=args.overwrite, own=_earlier_run)
    with cleaned_up_on_failure(out):
        params, result = train_and_evaluate(recipe, out / "run", args.data_dir)
    result["command"] = "mpjax train " + " ".join(sys.argv[2:] if argv is None else argv)
    name = recipe.name.replace("-", "_")
    checkpoint.save_params(out / "params", params, meta=result)
    flat = {path: np.asarray(x, np.float32) for path, x in tree.flatten(params).items()}
    write_npz(out / f"{name}.npz", flat, compressed=True)
    (out / "result.json").write_text(json.dumps(result, indent=2))
    print(
        f"{recipe.name}: test accuracy {result['test_accuracy']:.4f} after "
        f"{result['steps']} steps in {result['train_seconds']:.0f} s -> {out / 'params'}"
    )
    return 0
