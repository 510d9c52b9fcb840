"""The command line dispatches and reports bad input as one clear line."""

import subprocess
import sys

from mpjax.cli import dispatch as cli


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_unknown_command_is_an_error(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_unknown_benchmark_is_an_error(capsys):
    assert cli.main(["bench", "nope"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


def test_every_command_module_resolves():
    import importlib

    from mpjax.cli.bench import BENCHMARKS

    for name in cli.COMMANDS:
        assert callable(cli.command_main(name))
    for name in BENCHMARKS:
        assert callable(importlib.import_module(f"mpjax.cli.bench.{name}").main)


def test_python_dash_m():
    done = subprocess.run([sys.executable, "-m", "mpjax", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("mpjax ")
