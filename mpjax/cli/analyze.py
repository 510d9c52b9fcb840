"""``mpjax analyze SOURCE --out DIR``: spectra and MP fits of every layer, with plots."""

from __future__ import annotations

import argparse
import os

from mpjax.mp import analysis, fits, spectra

#: The files the command writes into ``--out``.
REPORT_FILES = ("analysis.csv", "analysis.json", "esd_grid.png", "edges.png")


def build_parser() -> argparse.ArgumentParser:
    """The ``mpjax analyze`` argument parser."""
    ap = argparse.ArgumentParser(prog="mpjax analyze", description="Per-layer MP analysis.")
    ap.add_argument("source", help="orbax dir, big_vision .npz, safetensors, or vit-b16 etc.")
    ap.add_argument("--out", required=True, help="output directory for the report")
    ap.add_argument("--method", default="bema", choices=fits.METHODS)
    ap.add_argument("--alpha", type=float, default=0.25, help="BEMA window trim")
    ap.add_argument("--beta", type=float, default=0.8, help="BEMA Tracy–Widom level")
    ap.add_argument("--tw-form", default="paper", choices=("paper", "reference-code"))
    ap.add_argument("--false-spike-rate", type=float, default=0.05)
    ap.add_argument("--include", action="append", help="path glob (repeatable)")
    ap.add_argument("--exclude", action="append", help="path glob (repeatable)")
    ap.add_argument("--spectra-method", default="gram", choices=spectra.METHODS)
    ap.add_argument("--max-panels", type=int, default=48)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Load SOURCE, write the per-layer report into ``--out`` and print where it went."""
    args = build_parser().parse_args(argv)
    from mpjax.models import load_source  # the model loaders import flax: only when run

    params, _info = load_source(args.source)
    report = analysis.analyze_to_dir(
        params,
        args.out,
        max_panels=args.max_panels,
        include=args.include,
        exclude=args.exclude,
        method=args.method,
        alpha=args.alpha,
        beta=args.beta,
        tw_form=args.tw_form,
        false_spike_rate=args.false_spike_rate,
        spectra_method=args.spectra_method,
    )
    for line in analysis.summary_lines(report):
        print(line)
    print(f"report written to {os.path.abspath(args.out)}: " + ", ".join(REPORT_FILES))
    return 0
