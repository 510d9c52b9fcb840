"""``mpjax prune SOURCE --method M --pattern P --sparsity S --out DIR [--data D] ...``.

Parses the options into a :class:`~mpjax.pipeline.PruneJob`, checks every option and
``--out`` (:func:`mpjax.cli.output.prepare_out`) before any work, runs the job
(:func:`mpjax.pipeline.run`) and prints the summary table. ``mpjax demo``
(:mod:`mpjax.cli.demo`) shares the options.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mpjax import arch
from mpjax.cli import cluster
from mpjax.cli.output import add_overwrite_flag, cleaned_up_on_failure, prepare_out
from mpjax.pipeline import PruneJob, PruneReport, format_table, job, oneshot, run
from mpjax.pruning import METHODS

#: First line of ``--help`` of ``mpjax prune`` and ``mpjax demo``.
DESCRIPTION = "End-to-end pruning: analyze -> budgets -> masks -> distill -> evaluate -> report."
#: Dataset names of ``--data`` (and ``certify --data``): name or alias -> canonical name.
DATASETS = job.DATASET_NAMES
#: Training images of the named datasets (the most ``--calib-images`` can draw).
TRAIN_IMAGES = {"fashion-mnist": 60_000, "mnist": 60_000}


def add_job_arguments(parser: argparse.ArgumentParser, *, out_required: bool) -> None:
    """Add the options of a :class:`~mpjax.pipeline.PruneJob` (all but the source)."""
    parser.add_argument("--out", required=out_required, default="runs/demo")
    add_overwrite_flag(parser)
    parser.add_argument("--method", default="magnitude", choices=tuple(METHODS))
    parser.add_argument("--pattern", default="unstructured", help="'unstructured' or K:N, e.g. 2:4")
    parser.add_argument("--sparsity", type=float, default=None, help="in [0, 1); implied by K:N")
    parser.add_argument("--data", default=None,
                        help="fashion-mnist (alias fmnist), mnist or an IDX directory")  # fmt: skip
    parser.add_argument("--data-dir", default=None, help="where the named dataset lives")
    parser.add_argument("--tome", type=int, default=0, help="ToMe merges per block")
    parser.add_argument("--permute", action="store_true", help="N:M input-channel permutation")
    parser.add_argument("--distill-steps", type=int, default=0, help=">= 0 (0: no distillation)")
    parser.add_argument("--distill-lr", type=float, default=5e-4, help="> 0")
    parser.add_argument("--calib-images", type=int, default=256,
                        help="training images whose layer inputs calibrate every method and "
                             "the reconstruction (>= 1)")  # fmt: skip
    parser.add_argument("--reconstruct", nargs="?", const="parallel", default="off",
                        choices=oneshot.RECONSTRUCT_MODES,
                        help="refit the kept weights to the dense layer outputs on the "
                             "calibration inputs: parallel (bare flag; dense inputs) or "
                             "sequential (forward order, inputs of the pruned model); "
                             "needs --data")  # fmt: skip
    parser.add_argument("--budget", default=None, choices=oneshot.BUDGETS,
                        help="per-layer sparsities of an unstructured target, for the "
                             "methods that take one (default: the method's own criterion)")  # fmt: skip
    parser.add_argument("--eval-images", type=int, default=None, help="> 0 (default: all)")
    parser.add_argument("--include", default=None, help="glob of layers to prune")
    parser.add_argument("--seed", type=int, default=0)


def canonical_data(spec: str | None) -> str | None:
    """The canonical name of a dataset name or alias (``fmnist`` -> ``fashion-mnist``)."""
    return DATASETS.get(spec.lower(), spec) if spec is not None else None


def check_options(args: argparse.Namespace) -> None:
    """Check the numeric options of a prune job, naming the flag at fault.

    Raises:
      ValueError: an option out of range.
    """
    if args.pattern == "unstructured" and "unstructured" not in METHODS[args.method].patterns:
        raise ValueError(
            f"--method {args.method}: has only an N:M form; pass --pattern K:N, e.g. 2:4."
        )
    if args.sparsity is not None and not 0.0 <= args.sparsity < 1.0:
        raise ValueError(f"--sparsity {args.sparsity}: must lie in [0, 1).")
    if args.eval_images is not None and args.eval_images <= 0:
        raise ValueError(f"--eval-images {args.eval_images}: must be > 0 (omit it for all).")
    if not args.distill_lr > 0:
        raise ValueError(f"--distill-lr {args.distill_lr}: must be > 0.")
    if args.distill_steps < 0:
        raise ValueError(f"--distill-steps {args.distill_steps}: must be >= 0.")
    if args.tome < 0:
        raise ValueError(f"--tome {args.tome}: must be >= 0.")
    if args.calib_images < 1:
        raise ValueError(f"--calib-images {args.calib_images}: must be >= 1.")
    name = canonical_data(args.data)
    available = TRAIN_IMAGES.get(name or "")
    if available is not None and args.calib_images > available:
        raise ValueError(
            f"--calib-images {args.calib_images}: {name} has {available} training "
            f"images; pass at most {available}."
        )


def max_tome(tokens: int) -> int:
    """The largest ToMe ``r`` a ViT of ``tokens`` tokens can merge: ``(tokens - 1) // 2``.

    Bipartite matching merges at most half of the tokens besides the class token, so the
    first block caps ``r`` there; a larger ``r`` gives the same token schedule
    (:func:`mpjax.arch.tome_schedule`) while the report would claim more merges.

    Examples:
      >>> max_tome(17), max_tome(197)
      (8, 98)
    """
    return arch.tome_merges(tokens, tokens)


def check_source(source: str) -> None:
    """Check that SOURCE is an existing path or a known name before any work starts.

    Raises:
      ValueError: the message of :func:`mpjax.models.load_source` for an unknown name.
    """
    from mpjax.models import sources

    if (Path(source).exists() or source.lower() in sources.RANDOM_INITS
            or source in sources.SHIPPED_SOURCES):  # fmt: skip
        return
    raise ValueError(
        f"source: {source!r} is neither an existing path nor a known name; "
        f"expected {sources.SUPPORTED}."
    )


def check_tome(tome: int, source: str) -> None:
    """Check ``--tome`` against the token count of a named source, known without loading it.

    Raises:
      ValueError: more merges per block than the model's tokens allow.
    """
    if not tome or Path(source).exists():
        return
    from mpjax.models import config_for, sources

    name = {sources.SHIPPED: "fmnist", "shipped-wide": "fmnist-wide"}.get(source, source.lower())
    if name not in ("fmnist", "fmnist-wide") and name not in sources.RANDOM_INITS:
        return
    tokens = config_for(name).num_tokens
    if tome > max_tome(tokens):
        raise ValueError(
            f"--tome {tome}: {source} has {tokens} tokens, so a block merges at most "
            f"{max_tome(tokens)}; pass --tome <= {max_tome(tokens)}."
        )


def job_from_args(args: argparse.Namespace, source: str) -> PruneJob:
    """The :class:`~mpjax.pipeline.PruneJob` of parsed options."""
    return PruneJob(
        source=source, out=args.out, method=args.method, pattern=args.pattern,
        sparsity=args.sparsity, data=canonical_data(args.data), data_dir=args.data_dir,
        tome_r=args.tome, permute=args.permute, distill_steps=args.distill_steps,
        distill_lr=args.distill_lr, calib_images=args.calib_images,
        eval_images=args.eval_images, include=args.include, seed=args.seed,
        overwrite=args.overwrite, reconstruct=args.reconstruct, budget=args.budget,
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``mpjax prune``."""
    parser = argparse.ArgumentParser(prog="mpjax prune", description=DESCRIPTION)
    parser.add_argument(
        "source", help="orbax dir, .npz, .safetensors, vit-ti16/b16/l16, 'shipped' or 'shipped-wide'"
    )
    add_job_arguments(parser, out_required=True)
    cluster.add_cluster_arguments(parser)
    return parser


def print_report(report: PruneReport, out: str | Path) -> None:
    """The summary table (``-`` for what was not measured), then where the report is."""
    print(format_table(report))
    print(f"report: {Path(out) / 'report.md'}")


def run_checked(args: argparse.Namespace, source: str, command: str) -> PruneReport:
    """Check the options and ``--out``, then run the job; a failed run leaves no empty ``--out``.

    Raises:
      ValueError: for a bad option, ``--out``, source or data (named in the message).
    """
    check_options(args)
    check_source(source)
    prune_job = job_from_args(args, source)
    prune_job.validate()
    check_tome(args.tome, source)
    out = prepare_out(args.out, command=command, overwrite=args.overwrite)
    with cleaned_up_on_failure(out):
        return run(prune_job)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mpjax prune``.

    Raises:
      ValueError: for a bad option, ``--out``, source or data (named in the message).
    """
    args = build_parser().parse_args(argv)
    node = cluster.init_from_args(args, batch_size=PruneJob.batch_size)  # before any JAX work
    with cluster.private_out(args, node):  # only process 0 writes --out
        report = run_checked(args, args.source, "prune")
    if node.primary:
        print_report(report, args.out)
    return 0
