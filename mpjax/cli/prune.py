"""``mpjax prune SOURCE --method M --pattern P --sparsity S --out DIR [--data D] ...``.

Parses the options into a :class:`~mpjax.pipeline.PruneJob`, runs it
(:func:`mpjax.pipeline.run`) and prints the summary table (or the report's JSON when no
data was given). ``mpjax demo`` (:mod:`mpjax.cli.demo`) shares the options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mpjax.pipeline import PruneJob, PruneReport, format_table, run
from mpjax.pruning import METHODS

#: First line of ``--help`` of ``mpjax prune`` and ``mpjax demo``.
DESCRIPTION = "End-to-end pruning: analyze -> budgets -> masks -> distill -> evaluate -> report."


def add_job_arguments(parser: argparse.ArgumentParser, *, out_required: bool) -> None:
    """Add the options of a :class:`~mpjax.pipeline.PruneJob` (all but the source)."""
    parser.add_argument("--out", required=out_required, default="runs/demo")
    parser.add_argument("--method", default="magnitude", choices=tuple(METHODS))
    parser.add_argument("--pattern", default="unstructured", help="'unstructured' or K:N, e.g. 2:4")
    parser.add_argument("--sparsity", type=float, default=None, help="in [0, 1); implied by K:N")
    parser.add_argument("--data", default=None, help="fashion-mnist, mnist or an IDX directory")
    parser.add_argument("--data-dir", default=None, help="where the named dataset lives")
    parser.add_argument("--tome", type=int, default=0, help="ToMe merges per block")
    parser.add_argument("--permute", action="store_true", help="N:M input-channel permutation")
    parser.add_argument("--distill-steps", type=int, default=0)
    parser.add_argument("--distill-lr", type=float, default=5e-4)
    parser.add_argument("--calib-images", type=int, default=256)
    parser.add_argument("--eval-images", type=int, default=None)
    parser.add_argument("--include", default=None, help="glob of layers to prune")
    parser.add_argument("--seed", type=int, default=0)


def job_from_args(args: argparse.Namespace, source: str) -> PruneJob:
    """The :class:`~mpjax.pipeline.PruneJob` of parsed options."""
    return PruneJob(
        source=source, out=args.out, method=args.method, pattern=args.pattern,
        sparsity=args.sparsity, data=args.data, data_dir=args.data_dir, tome_r=args.tome,
        permute=args.permute, distill_steps=args.distill_steps, distill_lr=args.distill_lr,
        calib_images=args.calib_images, eval_images=args.eval_images, include=args.include,
        seed=args.seed,
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``mpjax prune``."""
    parser = argparse.ArgumentParser(prog="mpjax prune", description=DESCRIPTION)
    parser.add_argument(
        "source", help="orbax dir, .npz, .safetensors, vit-ti16/b16/l16 or 'shipped'"
    )
    add_job_arguments(parser, out_required=True)
    return parser


def print_report(report: PruneReport, out: str) -> None:
    """The summary table (the report's JSON when nothing was evaluated), then where it is."""
    print(format_table(report) if report.acc_dense is not None else report.to_json())
    print(f"report: {Path(out) / 'report.md'}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mpjax prune``.

    Raises:
      ValueError: for a bad option, source or data (named in the message).
    """
    args = build_parser().parse_args(argv)
    print_report(run(job_from_args(args, args.source)), args.out)
    return 0
