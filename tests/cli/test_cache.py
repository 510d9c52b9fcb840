"""mpjax.cli.cache: where the persistent compilation cache goes, opt-outs, and that it works."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from mpjax.cli import cache, dispatch


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir({}) == tmp_path / "home" / ".cache" / "mpjax" / "jax"
    assert cache.cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/mpjax/jax")
    both = {"XDG_CACHE_HOME": "/x", cache.ENV_DIR: "~/jc"}
    assert cache.cache_dir(both) == tmp_path / "home" / "jc"  # the explicit folder wins
    for off in ("1", "yes", "true"):
        assert cache.cache_dir({**both, cache.ENV_OFF: off}) is None
    for on in ("", "0", " "):
        assert cache.cache_dir({cache.ENV_OFF: on, "XDG_CACHE_HOME": "/x"}) is not None


def test_enable_after_jax_import_sets_every_threshold(monkeypatch, tmp_path):
    calls = {}
    monkeypatch.setattr(jax.config, "update", lambda k, v: calls.__setitem__(k, v))
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    path = cache.enable({"XDG_CACHE_HOME": str(tmp_path)})
    assert path == tmp_path / "mpjax" / "jax" and path.is_dir()
    assert (path.stat().st_mode & 0o777) == 0o700  # private: cached code is trusted
    assert calls == {
        "jax_compilation_cache_dir": str(path),
        "jax_persistent_cache_min_compile_time_secs": 0.0,
        "jax_persistent_cache_min_entry_size_bytes": -1,
    }
    calls.clear()  # off, or a folder the user chose for JAX: nothing is changed
    assert cache.enable({cache.ENV_OFF: "1", "XDG_CACHE_HOME": str(tmp_path)}) is None
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "theirs"))
    assert cache.enable({"XDG_CACHE_HOME": str(tmp_path)}) is None
    assert calls == {}


def test_enable_gives_up_quietly_when_the_folder_cannot_be_made(tmp_path, monkeypatch):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    (tmp_path / "file").write_text("not a folder")
    assert cache.enable({cache.ENV_DIR: str(tmp_path / "file" / "sub")}) is None


@pytest.mark.parametrize(
    "argv,calls",
    [(["--no-compile-cache", "analyze", "--help"], 0), (["analyze", "--help"], 1),
     (["--no-compile-cache", "--version"], 0)],
)  # fmt: skip
def test_dispatch_flag_turns_the_cache_off(monkeypatch, capsys, argv, calls):
    seen = []
    monkeypatch.setattr(cache, "enable", lambda *a: seen.append(a))
    assert dispatch.main(argv) == 0
    assert len(seen) == calls
    assert cache.FLAG_OFF in dispatch.usage()


_SCRIPT = """
from mpjax.cli import cache
print(cache.enable())
import jax, jax.numpy as jnp
jax.jit(lambda x: x * 2.0 + 1.0)(jnp.ones(3)).block_until_ready()
"""


def _run(env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MPJAX_", "JAX_COMP"))}
    env.update(env_extra)
    done = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300, check=True)  # fmt: skip
    return done.stdout.strip()


def test_a_fresh_process_writes_the_cache_and_the_opt_out_does_not(tmp_path):
    folder = tmp_path / "on" / "mpjax" / "jax"
    assert _run({"XDG_CACHE_HOME": str(tmp_path / "on")}) == str(folder)
    assert any(folder.iterdir()), "a tiny program (well under a second) was cached"
    off = {"XDG_CACHE_HOME": str(tmp_path / "off"), cache.ENV_OFF: "1"}
    assert _run(off) == "None"
    assert not (tmp_path / "off").exists()
