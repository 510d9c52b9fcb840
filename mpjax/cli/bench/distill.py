"""Benchmark: cost of the frozen mask in a distillation step.

Times :func:`mpjax.training.loop.train_step` with a masked optimizer
(:func:`mpjax.training.masked.masked_updates`, magnitude masks) against the same step
without masks: same model, same teacher, same batch, same process, steps interleaved one by
one so that load from other processes hits both alike. Reports the median over ``--steps``
timed steps after ``--warmup`` untimed ones. Target: the masked step costs at most 10% more.

Usage: ``mpjax bench distill [--model fmnist] [--batch-size 128] [--steps 30]``.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mpjax.models import load_shipped_model, vit
from mpjax.pruning import apply_masks, magnitude_masks
from mpjax.training import (
    DistillConfig,
    TrainState,
    make_mesh,
    make_optimizer,
    train_step,
    vit_apply_fn,
)

#: The masked step may cost at most this much more than the unmasked one.
TARGET_RATIO = 1.10


def _batch(cfg: vit.ViTConfig, batch_size: int, seed: int) -> dict[str, np.ndarray]:
    """The first Fashion-MNIST batch for the fmnist model, random pixels otherwise."""
    if cfg.image_size == 28 and cfg.channels == 1:
        try:
            from mpjax import data

            x, y = data.load_fashion_mnist("train")
            return {"image": x[:batch_size], "label": y[:batch_size]}
        except ValueError:
            pass
    r = np.random.default_rng(seed)
    shape = (batch_size, cfg.image_size, cfg.image_size, cfg.channels)
    return {
        "image": r.integers(0, 256, shape, dtype=np.uint8),
        "label": r.integers(0, cfg.num_classes, batch_size).astype(np.int32),
    }


def _params(model: str, seed: int):
    if model == "fmnist":
        try:
            params, cfg, _ = load_shipped_model()
            return params, cfg
        except ValueError:
            pass
    cfg = vit.config_for(model)
    return vit.init_params(cfg, jax.random.PRNGKey(seed)), cfg


def build_parser() -> argparse.ArgumentParser:
    """The ``mpjax bench distill`` argument parser."""
    parser = argparse.ArgumentParser(prog="mpjax bench distill", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", default="fmnist", help="vit.config_for name (fmnist: shipped weights)"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant (>= 20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per variant")
    parser.add_argument("--sparsity", type=float, default=0.5, help="magnitude sparsity per layer")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table and the ratio; returns 0 (1 on bad arguments)."""
    args = build_parser().parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        print("mpjax bench distill: --steps and --warmup must be >= 1")
        return 1
    params, cfg = _params(args.model, args.seed)
    apply_fn = vit_apply_fn(cfg)
    m = magnitude_masks(params, args.sparsity)
    config = DistillConfig(batch_size=args.batch_size, num_steps=10_000, seed=args.seed)
    mesh = make_mesh()
    replicated = NamedSharding(mesh, P())
    batch = jax.device_put(_batch(cfg, args.batch_size, args.seed), NamedSharding(mesh, P("data")))
    student = apply_masks(params, m)
    states = {}
    for name, mk in (("unmasked", None), ("masked", m)):
        tx = make_optimizer(config, config.num_steps, mk)
        state = TrainState.create(student, apply_fn, tx, config, params)
        states[name] = jax.tree.map(jax.numpy.copy, jax.device_put(state, replicated))
    times: dict[str, list[float]] = {k: [] for k in states}
    for i in range(args.warmup + args.steps):
        for name in states:
            t0 = time.perf_counter()
            states[name], metrics = train_step(states[name], batch)
            jax.block_until_ready((states[name].params, metrics))
            if i >= args.warmup:
                times[name].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    ratio = med["masked"] / med["unmasked"]
    n_params = sum(np.size(x) for x in jax.tree.leaves(params))
    print(
        f"distillation step, ViT {args.model} ({n_params:,} params), batch {args.batch_size}, "
        f"{args.sparsity:.0%} magnitude masks, {jax.device_count()} x {jax.devices()[0].platform}, "
        f"median of {args.steps} steps after {args.warmup} warm-up"
    )
    print(f"{'variant':<10} {'median ms':>10} {'p10 ms':>9} {'p90 ms':>9} {'img/s':>9}")
    for name, v in times.items():
        print(
            f"{name:<10} {1e3 * med[name]:>10.2f} {1e3 * np.percentile(v, 10):>9.2f} "
            f"{1e3 * np.percentile(v, 90):>9.2f} {args.batch_size / med[name]:>9.0f}"
        )
    verdict = "OK" if ratio <= TARGET_RATIO else "ABOVE TARGET"
    print(f"masked / unmasked = {ratio:.3f} (target <= {TARGET_RATIO:.2f}: {verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
