"""``mpjax analyze SOURCE --out DIR``: spectra and MP fits of every layer, with plots.

The source is opened lazily (:func:`mpjax.models.lazy_sources.open_source`): weight matrices
are read a group of layers at a time, so peak memory follows the group, not the model
(sharded safetensors, bfloat16/float16 leaves, large npz and orbax trees).

Unless ``--no-plots`` (or ``MPJAX_PLOT_WORKER=0``), the ESD grid is drawn by a
:class:`~mpjax.cli.plot_worker.PlotWorker` started before anything heavy is imported, so its
matplotlib work overlaps this process's imports, reading and spectra.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mpjax.cli import plot_worker  # no JAX: the worker starts before JAX is imported
from mpjax.cli.output import add_overwrite_flag, cleaned_up_on_failure, prepare_out

if TYPE_CHECKING:
    from mpjax.mp.analysis import Analysis

#: The files the command writes into ``--out`` (the last two unless ``--no-plots``).
REPORT_FILES = ("analysis.csv", "analysis.json", "esd_grid.png", "edges.png")


def build_parser() -> argparse.ArgumentParser:
    """The ``mpjax analyze`` argument parser."""
    from mpjax.mp import fits, spectra

    ap = argparse.ArgumentParser(prog="mpjax analyze", description="Per-layer MP analysis.")
    ap.add_argument("source", help="orbax dir, big_vision .npz, safetensors, or vit-b16 etc.")
    ap.add_argument("--out", required=True, help="output directory for the report")
    add_overwrite_flag(ap)
    ap.add_argument("--method", default="bema", choices=fits.METHODS)
    ap.add_argument("--alpha", type=float, default=0.25, help="BEMA window trim")
    ap.add_argument("--beta", type=float, default=0.8, help="BEMA Tracy–Widom level")
    ap.add_argument("--tw-form", default="paper", choices=("paper", "reference-code"))
    ap.add_argument("--false-spike-rate", type=float, default=0.05)
    ap.add_argument("--include", action="append", help="path glob (repeatable)")
    ap.add_argument("--exclude", action="append", help="path glob (repeatable)")
    ap.add_argument("--spectra-method", default="gram", choices=spectra.METHODS)
    ap.add_argument("--max-panels", type=int, default=48)
    ap.add_argument("--no-plots", action="store_true", help="write the CSV and JSON only")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Load SOURCE, write the per-layer report into ``--out`` and print where it went.

    Raises:
      ValueError: for a bad option, ``--out`` or source (named in the message).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    worker = _early_worker(argv)
    try:
        args = build_parser().parse_args(argv)
        if args.max_panels < 1:
            raise ValueError(f"--max-panels {args.max_panels}: must be >= 1.")
        if not 0.0 < args.false_spike_rate < 1.0:
            raise ValueError(f"--false-spike-rate {args.false_spike_rate}: must lie in (0, 1).")
        out = prepare_out(args.out, command="analyze", overwrite=args.overwrite)
        with cleaned_up_on_failure(out):
            report = _analyze(args, out, worker)
    finally:
        if worker is not None:
            worker.close()
    from mpjax.mp import analysis

    for line in analysis.summary_lines(report):
        print(line)
    written = REPORT_FILES[:2] if args.no_plots else REPORT_FILES
    print(f"report written to {out}: " + ", ".join(written))
    return 0


def _early_worker(argv: list[str]) -> plot_worker.PlotWorker | None:
    """A plot worker, started now unless no figure will be drawn (or it is turned off)."""
    quiet = {"--no-plots", "-h", "--help"}.intersection(argv)
    return plot_worker.PlotWorker() if plot_worker.enabled() and not quiet else None


def _analyze(
    args: argparse.Namespace, out: Path, worker: plot_worker.PlotWorker | None
) -> Analysis:
    """Load the source and write the report of every selected layer into ``out``."""
    from mpjax.models import lazy_sources  # the model loaders import flax: only when run
    from mpjax.mp import analysis

    params, _info = lazy_sources.open_source(args.source)
    return analysis.analyze_to_dir(
        params,
        out,
        max_panels=args.max_panels,
        plots=not args.no_plots,
        plot_worker=worker,
        include=args.include,
        exclude=args.exclude,
        method=args.method,
        alpha=args.alpha,
        beta=args.beta,
        tw_form=args.tw_form,
        false_spike_rate=args.false_spike_rate,
        spectra_method=args.spectra_method,
    )
