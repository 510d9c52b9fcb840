"""The ``--out`` directory of a command: checked before any costly work, never clobbered.

Every command that writes files calls :func:`prepare_out` first. It refuses a path that
cannot become the output directory (a regular file, a path under a regular file, a symbolic
link, an unwritable parent) and a non-empty directory that is not an earlier run of the same
command, unless ``--overwrite`` is given. An accepted directory carries the marker file
:data:`MARKER` (``{"command": ..., "mpjax": version, "created": ...}``), so a later run of the
same command recognises it as its own. A run that fails calls :func:`cleanup_if_empty`, which
removes what :func:`prepare_out` created when nothing else was written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mpjax import __version__

#: Name of the marker file that :func:`prepare_out` writes into an accepted ``--out``.
MARKER = ".mpjax-run.json"

#: What :func:`prepare_out` created in this process, per resolved ``--out``: the directories
#: it made (outermost first) and whether it wrote the marker.
_CREATED: dict[Path, tuple[list[Path], bool]] = {}


def _marker(path: Path) -> dict | None:
    """The marker's contents in directory ``path``, or ``None`` when absent or unreadable."""
    try:
        found = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def owned(path: str | os.PathLike, command: str | None = None) -> bool:
    """True if directory ``path`` holds the marker (of ``command``, when given).

    Examples:
      >>> import tempfile
      >>> owned(tempfile.mkdtemp())
      False
    """
    found = _marker(Path(path))
    return found is not None and (command is None or found.get("command") == command)


def _check_ancestors(out: Path) -> None:
    """Check that the nearest existing ancestor of ``out`` is a writable directory."""
    parent = out.parent
    while not parent.exists() and not parent.is_symlink():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(
            f"--out {out}: {parent} is a file, not a directory; pass a path outside it."
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(
            f"--out {out}: the directory {parent} is not writable; pass a writable path."
        )


def prepare_out(
    path: str | os.PathLike,
    *,
    command: str,
    overwrite: bool = False,
    own: Callable[[Path], bool] | None = None,
) -> Path:
    """Validate ``--out`` before any costly work, create it and mark it as ``command``'s.

    Args:
      path: the ``--out`` of the command.
      command: the command's name (``"prune"``, ``"analyze"``, ...), stored in the marker.
      overwrite: accept a non-empty directory that is not an earlier run of ``command``
        (``--overwrite``); files the command writes by name are then replaced.
      own: recognises an earlier run of ``command`` that predates the marker (e.g. by its
        run files); such a directory is accepted and marked.

    Returns:
      The resolved directory, which exists and holds the marker.

    Raises:
      ValueError: ``path`` is a symbolic link, a regular file, lies under a regular file, or
        its parent is not writable; or it is a non-empty directory of files this command did
        not write and ``overwrite`` is false. Nothing is created then.
    """
    out = Path(path).expanduser()
    if out.is_symlink():
        raise ValueError(f"--out {out}: is a symbolic link; pass the real directory it names.")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file, not a directory; pass a directory path.")
    made: list[Path] = []
    if out.is_dir():
        if not os.access(out, os.W_OK | os.X_OK):
            raise ValueError(f"--out {out}: the directory is not writable; pass a writable path.")
        foreign = any(p.name != MARKER for p in out.iterdir())
        ours = owned(out, command) or (own is not None and own(out))
        if foreign and not ours and not overwrite:
            raise ValueError(
                f"--out {out}: the directory holds files that are not an earlier "
                f"`mpjax {command}` run; pass an empty or new directory, or --overwrite."
            )
    else:
        _check_ancestors(out)
        made = [p for p in reversed(out.parents) if not p.exists()] + [out]
        try:
            out.mkdir(parents=True)
        except OSError as err:
            raise ValueError(f"--out {out}: cannot create the directory ({err.strerror}).") from None
    resolved = out.resolve()
    wrote = not owned(out, command)
    if wrote:
        stamp = {"command": command, "mpjax": __version__,
                 "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip
        (out / MARKER).write_text(json.dumps(stamp, indent=2) + "\n")
    _CREATED[resolved] = ([p.resolve() for p in made], wrote)
    return resolved


def cleanup_if_empty(path: str | os.PathLike) -> bool:
    """Undo :func:`prepare_out` after a failed run that wrote nothing into ``path``.

    Removes the marker if :func:`prepare_out` wrote it in this process, then the directories
    it created, innermost first, as long as they are empty. A directory that existed before,
    or that holds any other file, is left alone.

    Returns:
      True if ``path`` no longer exists.
    """
    out = Path(path).expanduser()
    if out.is_symlink() or not out.is_dir():
        return not out.exists()
    made, wrote = _CREATED.pop(out.resolve(), ([], False))
    if wrote and [p.name for p in out.iterdir()] == [MARKER]:
        (out / MARKER).unlink()
    for directory in reversed(made):
        try:
            directory.rmdir()  # only an empty directory goes
        except OSError:
            break
    return not out.exists()


def add_overwrite_flag(parser: argparse.ArgumentParser) -> None:
    """Add the ``--overwrite`` flag every command that writes into ``--out`` takes."""
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an --out that holds files this command did not write")  # fmt: skip


@contextlib.contextmanager
def cleaned_up_on_failure(out: Path) -> Iterator[None]:
    """Run the block; if it raises, :func:`cleanup_if_empty` ``out`` and re-raise."""
    try:
        yield
    except BaseException:
        cleanup_if_empty(out)
        raise
