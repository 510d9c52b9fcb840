"""Property: over generated bad command lines, no traceback reaches the user and nothing
outside ``--out`` is touched.

Each example builds a small tree (a regular file, a directory of someone else's files, a
symbolic link to it, a ``.npy`` file), runs ``mpjax.cli.main(argv)`` in process from inside
that tree, and checks: exit status 2, exactly one stderr line that names a flag or a path of
the command line, and every file and directory outside the fresh ``--out`` unchanged. Every
generated command line holds at least one bad value, so each example stops at validation or
at loading a tiny source (``vit-fmnist``, a random init).
"""

import contextlib
import hashlib
import io
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mpjax.cli import main

#: ``--out`` values relative to the example's tree; only ``out/new`` is a good one.
BAD_OUTS = ("file.txt", "file.txt/sub", "link", "foreign", "foreign/../file.txt/x")
GOOD_OUT = "out/new"
#: Bad values of each command's options (flag -> values), and good ones to mix in.
BAD = {
    "analyze": {"--max-panels": ("0", "-3", "x"), "--method": ("nope",),
                "--false-spike-rate": ("0", "1.5", "nan-ish"), "source": ("nope", "file.txt")},
    "prune": {"--sparsity": ("1.0", "-0.5", "1.5", "x"), "--eval-images": ("-9000", "0", "q"),
              "--distill-lr": ("-1", "0"), "--distill-steps": ("-4",), "--tome": ("100", "-1"),
              "--calib-images": ("0", "100000"), "--pattern": ("3:2", "2:x", "0:4", "nope"),
              "--method": ("nope",), "source": ("nope", "file.txt")},
    "certify": {"--samples": ("-5", "0", "many"), "--data": ("x.npy", "nope", "foreign"),
                "dense": ("nope", "file.txt", "x.npy", "foreign")},
    "export": {"--tome-r": ("-1", "x"), "--nm": ("3:2", "x", "2:0"), "--dtype": ("int8",),
               "--arch": ("nope",), "source": ("nope", "file.txt")},
    "dynamics": {"--epochs": ("0", "-2", "x"), "--config": ("nope", "file.txt", "x.npy")},
}  # fmt: skip
GOOD = {
    "analyze": {"source": ("vit-fmnist",), "--method": ("bema",)},
    "prune": {"source": ("vit-fmnist",), "--sparsity": ("0.5",), "--method": ("magnitude",)},
    "certify": {"dense": ("nope",), "--samples": ("10",)},
    "export": {"source": ("vit-fmnist",), "--dtype": ("float32",)},
    "dynamics": {"--config": ("small",), "--epochs": ("1",)},
}
POSITIONAL = {"source", "dense"}


@st.composite
def command_lines(draw):
    """``(command, argv, out)``: a command line with at least one bad value."""
    command = draw(st.sampled_from(sorted(BAD)))
    out = draw(st.sampled_from((*BAD_OUTS, GOOD_OUT))) if command != "certify" else None
    bad = BAD[command]
    flags = draw(st.lists(st.sampled_from(sorted(bad)), min_size=0 if out != GOOD_OUT else 1,
                          max_size=2, unique=True))  # fmt: skip
    chosen = {flag: draw(st.sampled_from(bad[flag])) for flag in flags}
    for flag, values in GOOD[command].items():
        chosen.setdefault(flag, values[0])
    positional = [chosen.pop(p) for p in ("source", "dense") if p in chosen]
    if command == "certify":
        positional.append("nope2")  # the pruned checkpoint
    argv = [command, *positional]
    for flag, value in chosen.items():
        argv += [flag, value]
    if out is not None:
        argv += ["--out", out]
    return command, argv, out


def _make_tree(root: Path) -> None:
    (root / "file.txt").write_text("keep")
    (root / "foreign").mkdir()
    (root / "foreign" / "notes.txt").write_text("keep")
    (root / "link").symlink_to(root / "foreign")
    (root / "out").mkdir()
    with open(root / "x.npy", "wb") as f:
        f.write(b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"
                + b" " * 45 + b"\n" + b"\x00" * 8)  # fmt: skip


def _snapshot(root: Path, skip: Path | None) -> dict[str, tuple]:
    """Every entry under ``root`` (links not followed) with its kind, bytes hash and mtime."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if skip is not None and (here == skip or skip in here.parents):
            continue
        for name in dirnames + filenames:
            p = here / name
            if skip is not None and p == skip:
                continue
            st_ = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else None
            found[str(p.relative_to(root))] = (p.is_symlink(), p.is_dir(), digest, st_.st_mtime_ns)
    return found


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(command_lines())
@example(("prune", ["prune", "nope", "--sparsity", "0.5", "--out", GOOD_OUT], GOOD_OUT))
@example(("prune", ["prune", "shipped", "--method", "cast", "--out", GOOD_OUT], GOOD_OUT))
@example(("prune", ["prune", "vit-fmnist", "--sparsity", "0.5", "--out", "foreign"], "foreign"))
@example(("certify", ["certify", "nope", "nope2", "--data", "x.npy"], None))
@example(("export", ["export", "vit-fmnist", "--out", "link"], "link"))
@example(("dynamics", ["dynamics", "--config", "small", "--out", "foreign"], "foreign"))
@example(("analyze", ["analyze", "vit-fmnist", "--out", "file.txt/sub"], "file.txt/sub"))
def test_bad_command_lines_fail_cleanly_and_touch_nothing(case):
    command, argv, out = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _make_tree(root)
        skip = root / GOOD_OUT if out == GOOD_OUT else None
        before = _snapshot(root, skip)
        err, cwd = io.StringIO(), os.getcwd()
        os.chdir(root)
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(argv)
        finally:
            os.chdir(cwd)
        lines = err.getvalue().splitlines()
        assert code == 2, (argv, err.getvalue())
        assert len(lines) == 1 and lines[0].startswith(f"mpjax {command}: error: "), (argv, lines)
        named = [a for a in argv[1:] if a.startswith("--") or not a.startswith("-")]
        assert any(a in lines[0] for a in named) or "argument" in lines[0], (argv, lines)
        assert _snapshot(root, skip) == before, argv
        if skip is not None:  # a run that failed leaves no empty --out behind
            assert not skip.exists() or any(skip.iterdir()), argv
