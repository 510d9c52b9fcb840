"""``mpjax dynamics --config NAME|FILE.json --out DIR [--resume] [--epochs N]``: the L2 study.

Trains every member of the config (or runs its scaling / noise experiment) under ``--out``,
writes the records, ``summary.json`` and the plots, and prints the summary as JSON. See
:mod:`mpjax.dynamics` and `docs/method/l2-theory.md`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

from mpjax.dynamics import CONFIGS, load_config, run_experiment, validate


def build_parser() -> argparse.ArgumentParser:
    """The ``mpjax dynamics`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="mpjax dynamics",
        description="L2-regularised training dynamics of fully connected nets, recorded epoch "
        "by epoch.",
    )
    parser.add_argument(
        "--config",
        default=None,
        help=f"named config {sorted(CONFIGS)} or a JSON file of DynamicsConfig "
        "fields (default with --resume: the stored one)",
    )
    parser.add_argument("--out", required=True, help="run directory")
    parser.add_argument("--resume", action="store_true", help="extend the run in --out")
    parser.add_argument("--epochs", type=int, default=None, help="override config.epochs")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the study of ``--config`` under ``--out`` and print its summary; returns 0.

    Without ``--config``, ``--resume`` continues with the config stored in ``--out``.

    Raises:
      ValueError: a bad config, an existing run without ``--resume``, or a stored run whose
        config differs (only ``--epochs`` may change).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config is None:
        stored = os.path.join(args.out, "config.json")
        if not (args.resume and os.path.exists(stored)):
            parser.error("--config is required unless --resume finds DIR/config.json")
        config = load_config(stored)
    else:
        config = load_config(args.config)
    if args.epochs is not None:
        config = validate(dataclasses.replace(config, epochs=args.epochs))
    result = run_experiment(config, args.out, resume=args.resume, plots=not args.no_plots)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
