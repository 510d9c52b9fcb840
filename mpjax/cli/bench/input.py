"""Benchmark: throughput of the streaming input pipeline against the in-memory one.

Exports the first ``--images`` Fashion-MNIST training images (random pixels when the data
set is missing) to a temporary image folder and ArrayRecord file, then times, in the same
process and on the same batches (``--batch-size``, crop + flip augmentation on):

* ``in-memory``: :func:`mpjax.data.batches` over the uint8 arrays and the jitted
  :func:`mpjax.data.augment` of the training step (the baseline);
* ``folder`` / ``arrayrecord``: :class:`~mpjax.training.stream.ImageStream` reading,
  PNG-decoding and augmenting every batch (``--workers`` grain worker processes).

Each pipeline runs ``--steps`` batches after one untimed warm-up batch and reports
images/s; the last line is the stream's throughput over the in-memory one.

Usage: ``mpjax bench input [--images 4096] [--batch-size 128] [--steps 24] [--workers 0]``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import numpy as np

from mpjax import data as data_lib
from mpjax.training import DistillConfig, prepare_images
from mpjax.training.image_sources import (
    ArrayRecordSource,
    ImageFolderSource,
    export_array_record,
    export_image_folder,
)
from mpjax.training.stream import ImageStream


def build_parser() -> argparse.ArgumentParser:
    """The ``mpjax bench input`` argument parser."""
    parser = argparse.ArgumentParser(prog="mpjax bench input", description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=4096, help="images exported (>= batch)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=24, help="timed batches per pipeline")
    parser.add_argument("--workers", type=int, default=0, help="grain worker processes")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def _check(args: argparse.Namespace) -> None:
    if args.batch_size < 1 or args.steps < 1 or args.workers < 0:
        raise ValueError(
            f"--batch-size {args.batch_size} / --steps {args.steps} / --workers {args.workers}: "
            "need a batch and steps >= 1 and workers >= 0."
        )
    if args.images < args.batch_size:
        raise ValueError(f"--images {args.images}: must be >= --batch-size {args.batch_size}.")


def _dataset(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The first ``n`` Fashion-MNIST training images, or random ones when it is missing."""
    try:
        images, labels = data_lib.load_fashion_mnist("train")
        return images[:n], labels[:n], "Fashion-MNIST"
    except ValueError:
        r = np.random.default_rng(seed)
        return r.integers(0, 256, (n, 28, 28), np.uint8), r.integers(0, 10, n), "random pixels"


def _in_memory(images, labels, config: DistillConfig, steps: int) -> Iterator[np.ndarray]:
    """The in-memory path: array batches, then the step's jitted augmentation."""
    aug = jax.jit(functools.partial(data_lib.augment, padding=config.crop_padding, flip=True))
    key = jax.random.PRNGKey(config.seed)
    spe = data_lib.num_batches(len(images), config.batch_size)
    for t in range(steps):
        epoch, b = divmod(t, spe)
        x, _ = next(
            data_lib.batches(images, labels, config.batch_size, config.seed, epoch, start_batch=b)
        )
        yield aug(jax.random.fold_in(key, t), prepare_images(x)).block_until_ready()


def _timed(make: Callable[[], Iterator], steps: int, batch: int) -> float:
    """Images per second over ``steps`` batches after one warm-up batch."""
    it = make()
    next(it)  # compilation, loader start-up
    t0 = time.perf_counter()
    for _ in range(steps):
        next(it)
    rate = steps * batch / (time.perf_counter() - t0)
    it.close()  # stop grain's workers now, not at interpreter exit
    gc.collect()
    return rate


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; returns 0."""
    args = build_parser().parse_args(argv)
    _check(args)
    images, labels, what = _dataset(args.images, args.seed)
    config = DistillConfig(batch_size=args.batch_size, seed=args.seed, augment=True)
    total = args.steps + 1
    with tempfile.TemporaryDirectory(prefix="mpjax-bench-input-") as tmp:
        folder = export_image_folder(images, labels, Path(tmp) / "folder")
        records = export_array_record(images, labels, Path(tmp) / "train.array_record")
        order = np.argsort(labels, kind="stable")  # the folder's record order
        rates = {"in-memory": _timed(lambda: _in_memory(images[order], labels[order], config,
                                                        total), args.steps, args.batch_size)}  # fmt: skip
        for name, source in (("folder", ImageFolderSource(folder)),
                             ("arrayrecord", ArrayRecordSource(records))):  # fmt: skip
            stream = ImageStream(source, worker_count=args.workers)
            rates[name] = _timed(lambda s=stream: (b for _, b in s.iterate(config, total, 0)),
                                 args.steps, args.batch_size)  # fmt: skip
    print(
        f"input pipeline, {args.images} {what} images 28x28, batch {args.batch_size}, crop + flip, "
        f"{args.steps} timed batches, {args.workers} grain workers, {jax.devices()[0].platform}"
    )
    print(f"{'pipeline':<12} {'images/s':>10} {'ms/batch':>9}")
    for name, rate in rates.items():
        print(f"{name:<12} {rate:>10.0f} {1e3 * args.batch_size / rate:>9.1f}")
    best = max(rates["folder"], rates["arrayrecord"])
    print(f"stream (best) / in-memory = {best / rates['in-memory']:.3f} "
          "(decode + augment on the host vs. arrays already in memory)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
