"""The ``mpjax`` command line: the only code in mpjax that parses argv.

One module per command (``analyze``, ``prune``, ``demo``, ``train``, ``certify``,
``dynamics``, ``export``), each with ``build_parser()`` and ``main(argv) -> int``; the
benchmarks live in :mod:`mpjax.cli.bench`; :mod:`mpjax.cli.dispatch` picks the command.
"""

from mpjax.cli.dispatch import COMMANDS, main

__all__ = [
    "COMMANDS",
    "main",
]
