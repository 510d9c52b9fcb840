"""``mpjax bench quality``: accuracy of pruning methods at equal distillation budget.

On the shipped Fashion-MNIST ViT, for each setting (50% unstructured, 2:4, 2:4 + ToMe) and
seed, prune with each method, distill for the same number of steps, and evaluate. Prints
mean and spread over seeds per (method, pattern, tome) and writes every run as a row of
``--json FILE`` (``method, pattern, tome, seed, sparsity, acc_dense, acc_pruned,
acc_distilled`` and timings).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from mpjax import pipeline

#: (method, pattern, tome_r) settings compared at equal budget.
SETTINGS = (
    ("magnitude", "unstructured", 0),
    ("seb", "unstructured", 0),
    ("ser", "unstructured", 0),
    ("magnitude", "2:4", 0),
    ("cast", "2:4", 0),
    ("magnitude", "2:4", 1),
    ("cast", "2:4", 1),
)


def run(seeds: int, steps: int, source: str, data: str, eval_images: int | None,
        settings=SETTINGS, workdir: str | None = None) -> list[dict]:
    """Prune, distill and evaluate each setting for each seed.

    Returns:
      One row per (setting, seed): ``method, pattern, tome, seed, sparsity, acc_dense,
      acc_pruned, acc_distilled, seconds``.
    """
    rows = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for seed in range(seeds):
            for method, pattern, tome in settings:
                job = pipeline.PruneJob(
                    source=source, out=str(Path(tmp) / f"{method}-{pattern}-{tome}-{seed}"),
                    method=method, pattern=pattern,
                    sparsity=0.5 if pattern == "unstructured" else None, data=data,
                    tome_r=tome, permute=pattern != "unstructured", distill_steps=steps,
                    eval_images=eval_images, seed=seed, progress=False,
                )  # fmt: skip
                report = pipeline.run(job)
                rows.append(dict(method=method, pattern=pattern, tome=tome, seed=seed,
                                 sparsity=report.sparsity, acc_dense=report.acc_dense,
                                 acc_pruned=report.acc_pruned,
                                 acc_distilled=report.acc_distilled, seconds=report.seconds))
                print(f"  {method:9s} {pattern:12s} tome={tome} seed={seed}: "
                      f"pruned {report.acc_pruned:.4f} distilled {report.acc_distilled:.4f}",
                      flush=True)
    return rows


def table(rows: list[dict]) -> str:
    """Mean +- std over seeds per (method, pattern, tome)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["method"], r["pattern"], r["tome"])].append(r)
    lines = [f"{'method':10s} {'pattern':12s} {'tome':>4s} {'seeds':>5s} "
             f"{'pruned':>16s} {'distilled':>16s}"]
    for (method, pattern, tome), rs in groups.items():
        p = np.array([r["acc_pruned"] for r in rs])
        d = np.array([r["acc_distilled"] for r in rs])
        lines.append(f"{method:10s} {pattern:12s} {tome:4d} {len(rs):5d} "
                     f"{p.mean():.4f} +- {p.std():.4f} {d.mean():.4f} +- {d.std():.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mpjax bench quality``."""
    parser = argparse.ArgumentParser(
        prog="mpjax bench quality", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300, help="distillation steps per run")
    parser.add_argument("--source", default=pipeline.SHIPPED)
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--eval-images", type=int, default=None)
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.steps < 0:
        raise ValueError("--seeds must be >= 1 and --steps >= 0.")
    rows = run(args.seeds, args.steps, args.source, args.data, args.eval_images)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
        print(f"rows: {args.json}")
    return 0
