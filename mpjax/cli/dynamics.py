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
import sys
from pathlib import Path

from mpjax.cli.output import add_overwrite_flag, cleaned_up_on_failure, prepare_out
from mpjax.dynamics import CONFIGS, load_config, run_experiment, store, validate, verdicts
from mpjax.dynamics.config import DynamicsConfig, to_dict


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
    parser.add_argument(
        "--results",
        default=None,
        help="also write a compact results JSON here: the config, the command, the summary "
        "and the per-claim verdicts (mpjax.dynamics.verdicts)",
    )
    parser.add_argument(
        "--compare",
        default=None,
        help="a --results JSON of the N(0, 1/N) scaling run, to judge the N(0, 1/N^2) claim",
    )
    return parser


def results_document(
    config: DynamicsConfig, result: dict, argv: list[str], compare: dict | None
) -> dict:
    """The ``--results`` JSON: what ran (config, command), its summary, the verdicts."""
    if config.experiment == "scaling":
        rows = result["rows"]
        init = {"1/width": "N(0, 1/N)", "1/width^2": "N(0, 1/N^2)"}.get(
            config.init_scaling, config.init_scaling
        )
        found = verdicts.scaling_verdicts(rows, init=init)
        if compare is not None:  # this run is the 1/N^2 one: judge "falls faster"
            found.insert(1, verdicts.scaling_verdicts(compare["result"]["rows"], rows)[1])
    else:
        found = verdicts.table_verdicts(result["arms"])
        if config.experiment == "noise":
            arm = [a for a in result["arms"] if a["arm"] == (config.noise_arm or a["arm"])][0]
            mid = config.widths[config.n_layers // 2]
            found += verdicts.noise_verdicts(result["noise"], mid, arm["test_acc_mean"])
    return {
        "command": "mpjax dynamics " + " ".join(argv),
        "config": to_dict(config),
        "result": result,
        "verdicts": found,
    }


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
    compare = None
    if args.compare is not None:
        if not os.path.isfile(args.compare):
            raise ValueError(f"--compare {args.compare}: no such file; give a --results JSON")
        with open(args.compare) as f:
            compare = json.load(f)
    with cleaned_up_on_failure(out):
        result = run_experiment(config, str(out), resume=args.resume, plots=not args.no_plots)
    print(json.dumps(result, indent=2))
    if args.results is not None:
        doc = results_document(
            config, result, list(sys.argv[1:] if argv is None else argv), compare
        )
        store.write_json(args.results, doc)
    written = "summary.json" if config.experiment != "scaling" else "scaling.json"
    plots = "" if args.no_plots else ", plots/"
    print(f"run written to {out}: {written}{plots}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
