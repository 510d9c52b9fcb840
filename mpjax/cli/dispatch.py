"""The ``mpjax`` command dispatcher.

Each command is a module ``mpjax.cli.<command>`` with ``main(argv) -> int`` and its own
``argparse`` parser; the dispatcher imports only the module asked for, so ``mpjax --help``
stays fast. Bad input inside a command raises ``ValueError`` / ``FileNotFoundError`` with
one sentence, and an argparse error (a bad flag value, a missing argument) becomes such an
error too; the dispatcher prints it on one line, ``mpjax CMD: error: ...``, and exits with
status 2. No traceback reaches the user: an ``OSError`` is reported on one line as well.

Every command runs with JAX's persistent compilation cache on (see :mod:`mpjax.cli.cache`:
``~/.cache/mpjax/jax``; ``MPJAX_NO_COMPILE_CACHE=1`` or ``mpjax --no-compile-cache
COMMAND`` turns it off), so a second run of a command skips compilation.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Iterator

from mpjax.cli import cache

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


class UsageError(ValueError):
    """A command line that argparse rejects (the message names the argument)."""


@contextlib.contextmanager
def one_line_usage_errors() -> Iterator[None]:
    """While active, argparse errors raise :class:`UsageError` instead of printing the
    usage block and exiting, so the dispatcher reports them on one line."""

    def error(parser: argparse.ArgumentParser, message: str) -> None:
        raise UsageError(f"{message}; see `{parser.prog} --help`.")

    original = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = error  # type: ignore[method-assign]
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original  # type: ignore[method-assign]


def usage() -> str:
    """The top-level help text."""
    lines = [f"usage: mpjax [{cache.FLAG_OFF}] COMMAND [ARGS ...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, help_ in COMMANDS.items()]
    lines += ["", "Run `mpjax COMMAND --help` for a command's options."]
    lines += [f"{cache.FLAG_OFF} (or {cache.ENV_OFF}=1): no persistent compilation cache."]
    return "\n".join(lines)


def command_main(name: str):
    """The ``main(argv) -> int`` function of command ``name``."""
    return importlib.import_module(f"mpjax.cli.{name}").main


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mpjax`` console script and of ``python -m mpjax``."""
    argv, no_cache = cache.strip_flag(list(sys.argv[1:] if argv is None else argv))
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
    if not no_cache:
        cache.enable()
    try:
        with one_line_usage_errors():
            return int(command_main(name)(rest) or 0)
    except SystemExit as done:  # --help, or a command that exits on its own
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 2)
    except (ValueError, OSError) as err:
        # Bad input (FileNotFoundError is an OSError) is one clear line, not a traceback.
        print(f"mpjax {name}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mpjax {name}: interrupted.", file=sys.stderr)
        return 130


def _one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (an exception may carry a multi-line dump)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[0] if lines else type(err).__name__) + (" ..." if len(lines) > 1 else "")
