"""The ``mpjax`` command line: the only code that parses argv."""

from mpjax.cli.dispatch import main

__all__ = [
    "main",
]
