"""The ``mpjax`` command dispatcher.

Each command is a module ``mpjax.cli.<command>`` with ``main(argv) -> int`` and its own
``argparse`` parser; the dispatcher imports only the module asked for, so ``mpjax --help``
stays fast. Bad input inside a command raises ``ValueError`` / ``FileNotFoundError`` with
one sentence; the dispatcher prints it on one line and exits with status 2.
"""

from __future__ import annotations

import importlib
import sys

#: command -> one-line help; the module ``mpjax.cli.<command>`` implements it.
COMMANDS: dict[str, str] = {
    "analyze": "spectra and MP fits of every layer, with plots",
    "prune": "prune (and optionally distill) a model",
    "demo": "prune + distill the shipped Fashion-MNIST ViT",
    "train": "train a model from a named recipe",
    "certify": "data-path certificates of a pruning step",
    "dynamics": "L2 training-dynamics study of FC nets",
    "export": "export a pruned ViT for the PyTorch runtime",
    "bench": "benchmarks: spectra, prune, distill, quality, runtime, dynamics",
}


def usage() -> str:
    """The top-level help text."""
    lines = ["usage: mpjax COMMAND [ARGS ...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, help_ in COMMANDS.items()]
    lines += ["", "Run `mpjax COMMAND --help` for a command's options."]
    return "\n".join(lines)


def command_main(name: str):
    """The ``main(argv) -> int`` function of command ``name``."""
    return importlib.import_module(f"mpjax.cli.{name}").main


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mpjax`` console script and of ``python -m mpjax``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from mpjax import __version__

        print(f"mpjax {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"mpjax: unknown command {name!r}.\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        return int(command_main(name)(rest) or 0)
    except (ValueError, FileNotFoundError) as err:
        # Bad input is reported as one clear sentence, not a traceback.
        print(f"mpjax {name}: error: {err}", file=sys.stderr)
        return 2
