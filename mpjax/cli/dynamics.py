"""``mpjax dynamics --config NAME|FILE.json --out DIR [--resume] [--epochs N]``: the L2 study.

Trains every member of the config (or runs its scaling / noise experiment) under ``--out``,
writes the records, ``summary.json`` and the plots, prints the summary as JSON and then
where the run went. ``--out`` is checked (:func:`mpjax.cli.output.prepare_out`) before any
training; a directory that holds an earlier dynamics run counts as this command's own. See
:mod:`mpjax.dynamics` and `docs/method/l2-theory.md`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from mpjax.cli.output import add_overwrite_flag, cleaned_up_on_failure, prepare_out
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
    add_overwrite_flag(parser)
    parser.add_argument("--epochs", type=int, default=None, help="override config.epochs")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    return parser


def is_dynamics_run(path: Path) -> bool:
    """True if ``path`` holds a dynamics run: ``config.json`` (train, noise) or ``scaling.json``
    / ``N*/config.json`` (scaling)."""
    return (
        (path / "config.json").is_file()
        or (path / "scaling.json").is_file()
        or any(path.glob("N*/config.json"))
    )


def main(argv: list[str] | None = None) -> int:
    """Run the study of ``--config`` under ``--out`` and print its summary; returns 0.

    Without ``--config``, ``--resume`` continues with the config stored in ``--out``.

    Raises:
      ValueError: a bad config or ``--out``, an existing run without ``--resume``, or a
        stored run whose config differs (only ``--epochs`` may change).
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
        if args.epochs < 1:
            raise ValueError(f"--epochs {args.epochs}: must be >= 1.")
        config = validate(dataclasses.replace(config, epochs=args.epochs))
    out = prepare_out(args.out, command="dynamics", overwrite=args.overwrite, own=is_dynamics_run)
    with cleaned_up_on_failure(out):
        result = run_experiment(config, str(out), resume=args.resume, plots=not args.no_plots)
    print(json.dumps(result, indent=2))
    written = "summary.json" if config.experiment != "scaling" else "scaling.json"
    plots = "" if args.no_plots else ", plots/"
    print(f"run written to {out}: {written}{plots}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
