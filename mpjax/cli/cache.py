"""JAX's persistent compilation cache for the ``mpjax`` command line.

A JAX program is compiled the first time it runs in a process (seconds for a training or
pruning step). With the persistent cache on, the compiled executable is also written to a
folder, and a later run of the same command with the same shapes reads it back instead of
compiling again. The command line turns it on for every command; the Python API leaves
JAX's settings alone.

The folder, first match wins:

1. ``$MPJAX_COMPILE_CACHE`` (a path);
2. ``$XDG_CACHE_HOME/mpjax/jax``;
3. ``~/.cache/mpjax/jax``.

Opt out with ``MPJAX_NO_COMPILE_CACHE=1`` or ``mpjax --no-compile-cache COMMAND ...``. A
``JAX_COMPILATION_CACHE_DIR`` already set by the user is kept as it is. Every program is
cached, however short its compile time or small its executable (JAX's defaults skip those
under one second). The folder is created private to the user (mode ``0700``): a
compilation cache is trusted code, never share it with users you do not trust. When it
cannot be created the command runs without a cache.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

#: Environment variable naming the cache folder.
ENV_DIR = "MPJAX_COMPILE_CACHE"
#: Environment variable that turns the cache off when set to anything but ``""``/``0``.
ENV_OFF = "MPJAX_NO_COMPILE_CACHE"
#: Command-line flag (before the command) that turns the cache off.
FLAG_OFF = "--no-compile-cache"


def cache_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The cache folder the environment asks for, or ``None`` when the cache is off.

    Args:
      environ: the environment to read (default ``os.environ``).

    Examples:
      >>> str(cache_dir({"XDG_CACHE_HOME": "/tmp/c"}))
      '/tmp/c/mpjax/jax'
      >>> cache_dir({"MPJAX_NO_COMPILE_CACHE": "1"}) is None
      True
    """
    env = os.environ if environ is None else environ
    if env.get(ENV_OFF, "").strip() not in ("", "0"):
        return None
    if env.get(ENV_DIR):
        return Path(env[ENV_DIR]).expanduser()
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "mpjax" / "jax"


def settings(path: Path) -> dict[str, str | float | int]:
    """JAX options that cache every program in ``path`` (names as ``jax.config`` spells them;
    upper-cased they are the environment variables JAX reads at import)."""
    return {
        "jax_compilation_cache_dir": str(path),
        # cache programs however fast they compile and however small they are
        "jax_persistent_cache_min_compile_time_secs": 0.0,
        "jax_persistent_cache_min_entry_size_bytes": -1,
    }


def enable(environ: Mapping[str, str] | None = None) -> Path | None:
    """Turn the persistent compilation cache on for this process; returns its folder.

    Before JAX is imported the options go into ``os.environ`` (JAX reads them at import;
    values the user set win); after, into ``jax.config``. Returns ``None`` (and changes
    nothing) when the cache is off, the user set ``JAX_COMPILATION_CACHE_DIR``, or the
    folder cannot be created.
    """
    path = cache_dir(environ)
    if path is None or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    options = settings(path)
    if "jax" not in sys.modules:
        for name, value in options.items():
            os.environ.setdefault(name.upper(), str(value))
        return path
    import jax

    for name, value in options.items():
        jax.config.update(name, value)
    return path


def strip_flag(argv: list[str]) -> tuple[list[str], bool]:
    """``(argv without leading FLAG_OFF, whether it was there)``."""
    off = False
    while argv and argv[0] == FLAG_OFF:
        argv, off = argv[1:], True
    return argv, off
