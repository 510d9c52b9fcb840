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


def test_argparse_errors_are_one_line_naming_the_argument(capsys):
    assert cli.main(["prune", "shipped", "--out", "x", "--eval-images", "many"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mpjax prune: error: argument --eval-images")
    assert cli.main(["analyze", "--out", "x"]) == 2  # the source is missing
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "source" in err
    assert cli.main(["prune", "--help"]) == 0  # --help still exits 0, in process too
    assert "--overwrite" in capsys.readouterr().out


def test_an_oserror_or_multiline_error_is_one_line(monkeypatch, capsys):
    def fail(argv):
        raise NotADirectoryError(20, "Not a directory", "/x/y")

    monkeypatch.setattr(cli, "command_main", lambda name: fail)
    assert cli.main(["analyze"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/x/y" in err

    def dump(argv):
        raise ValueError("checkpoint: truncated.\n" + "tensorstore dump\n" * 60)

    monkeypatch.setattr(cli, "command_main", lambda name: dump)
    assert cli.main(["analyze"]) == 2
    assert capsys.readouterr().err == "mpjax analyze: error: checkpoint: truncated. ...\n"
