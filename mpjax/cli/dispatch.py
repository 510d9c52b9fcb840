"""The ``mpjax`` command line.

Each sub-command lives beside the concept it serves and exposes ``main_<name>(argv) -> int``
with its own ``argparse`` parser; this module only dispatches, importing the module lazily so
``mpjax --help`` stays fast. ``python -m mpjax`` is the same program.
"""

from __future__ import annotations

import importlib
import sys

#: sub-command -> ("module", "function", one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "analyze": ("mpjax.mp.analysis", "main_analyze", "spectra and MP fits of every layer, with plots"),
    "prune": ("mpjax.pipeline.job", "main_prune", "prune (and optionally distill) a model"),
    "demo": ("mpjax.pipeline.job", "main_demo", "prune + distill the shipped Fashion-MNIST ViT"),
    "train": ("mpjax.training.recipes", "main_train", "train a model from a named recipe"),
    "certify": ("mpjax.certificates.network", "main_certify", "data-path certificates of a pruning step"),
    "dynamics": ("mpjax.dynamics.trainer", "main_dynamics", "L2 training-dynamics study of FC nets"),
    "export": ("mpjax.export", "main_export", "export a pruned ViT for the PyTorch runtime"),
    "bench": ("mpjax.cli.dispatch", "main_bench", "benchmarks: spectra, prune, distill, quality, runtime, dynamics"),
}

#: benchmark name -> module under mpjax.cli.bench with ``main(argv) -> int``
BENCHMARKS = ("spectra", "prune", "distill", "quality", "runtime", "dynamics")


def _usage() -> str:
    lines = ["usage: mpjax COMMAND [ARGS ...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "Run `mpjax COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main_bench(argv: list[str] | None = None) -> int:
    """``mpjax bench NAME [ARGS ...]``: run one benchmark and print its table."""
    argv = list(sys.argv[2:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: mpjax bench {" + ",".join(BENCHMARKS) + "} [ARGS ...]")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        print(f"mpjax bench: unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}.",
              file=sys.stderr)
        return 2
    module = importlib.import_module(f"mpjax.cli.bench.{name}")
    return int(module.main(rest) or 0)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mpjax`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from mpjax import __version__

        print(f"mpjax {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"mpjax: unknown command {name!r}.\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name, _ = COMMANDS[name]
    func = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(func(rest) or 0)
    except (ValueError, FileNotFoundError) as err:
        # Bad input is reported as one clear sentence, not a traceback.
        print(f"mpjax {name}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
