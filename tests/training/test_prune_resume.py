"""``kill -9`` during a distillation, then the same command again: the run resumes from its
last periodic checkpoint and ends with the same parameters as an uninterrupted run, bit for
bit, logging every step once. Once through :func:`mpjax.training.distill` directly, once
through ``mpjax prune --distill-steps`` (the pipeline distills into ``OUT/distill``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import hypothesis  # noqa: F401  (imported before orbax runs: CPython 3.11.7 AST bug)
import jax
import numpy as np
import pytest

from mpjax import checkpoint

ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")

DISTILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import jax, numpy as np
    sys.path.insert(0, {tests!r})
    from tiny_net import apply_fn, half_masks, init_params, small_config, tiny_data
    from mpjax.pruning import apply_masks
    from mpjax.training import loop

    mode, root = sys.argv[1], sys.argv[2]
    if mode == "slow":  # slow the steps down so that the test can kill the run half-way
        fast_step = loop.train_step

        def slow_step(state, batch):
            time.sleep(0.03)
            return fast_step(state, batch)

        loop.train_step = slow_step
    params, data = init_params(), tiny_data()
    masks = half_masks(params)
    cfg = small_config(num_steps=80, log_every=5, augment=True)  # default: every 20 steps

    def run(workdir):
        student = apply_masks(params, masks)
        out, _ = loop.distill(student, params, masks, apply_fn, data, cfg, workdir)
        return [np.asarray(x) for x in jax.tree.leaves(out)]

    resumed = run(root + "/cut")
    if mode == "resume":
        full = run(root + "/full")
        same = all(np.array_equal(a, b) for a, b in zip(full, resumed, strict=True))
        print("SAME" if same else "DIFFERENT")
    """
)


def _checkpoint_steps(directory: Path) -> list[int]:
    """Committed checkpoint steps (orbax renames ``<step>.orbax-checkpoint-tmp-*`` when done)."""
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _logged_steps(path: Path) -> list[int]:
    if not path.exists():
        return []
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (json.JSONDecodeError, KeyError):
            pass  # a row being written
    return steps


def _kill_after_checkpoint(cmd: list[str], workdir: Path, timeout: float) -> list[int]:
    """Start ``cmd``; ``kill -9`` it once ``workdir`` holds a checkpoint and a later metrics row.

    Returns the committed checkpoint steps at the kill.
    """
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            steps = _checkpoint_steps(workdir / "checkpoints")
            logged = _logged_steps(workdir / "metrics.jsonl")
            if steps and logged and max(logged) > steps[-1]:
                proc.kill()  # SIGKILL: no clean-up handler runs
                break
            time.sleep(0.02)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    assert proc.returncode == -9, f"the run was not killed half-way:\n{err[-3000:]}"
    assert not (workdir / "summary.json").exists()
    return _checkpoint_steps(workdir / "checkpoints")


@pytest.mark.slow
def test_distill_resumes_after_kill_bit_for_bit(tmp_path):
    script = DISTILL_SCRIPT.format(tests=str(Path(__file__).parent))
    cut = tmp_path / "cut"
    steps = _kill_after_checkpoint(
        [sys.executable, "-c", script, "slow", str(tmp_path)], cut, timeout=120
    )
    assert steps and steps[-1] < 80 and steps[-1] % 20 == 0  # periodic, not only the end
    assert max(_logged_steps(cut / "metrics.jsonl")) > steps[-1]  # rows the resume redoes
    res = subprocess.run(
        [sys.executable, "-c", script, "resume", str(tmp_path)],
        env=ENV, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resuming from step {steps[-1]}" in res.stderr
    assert "SAME" in res.stdout
    assert _logged_steps(cut / "metrics.jsonl") == list(range(5, 81, 5))


PRUNE = [
    "prune", "shipped", "--method", "magnitude", "--pattern", "2:4", "--data", "fashion-mnist",
    "--distill-steps", "12", "--eval-images", "100", "--calib-images", "16",
]  # fmt: skip


def _mpjax(*args: str) -> list[str]:
    return [sys.executable, "-m", "mpjax", *args]


@pytest.mark.slow
def test_prune_resumes_after_kill_bit_for_bit(tmp_path):
    cut, full = tmp_path / "cut", tmp_path / "full"
    steps = _kill_after_checkpoint(_mpjax(*PRUNE, "--out", str(cut)), cut / "distill", 300)
    assert steps and steps[-1] < 12
    res = subprocess.run(
        _mpjax(*PRUNE, "--out", str(cut)), env=ENV, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resuming from step {steps[-1]}" in res.stderr
    res = subprocess.run(
        _mpjax(*PRUNE, "--out", str(full)), env=ENV, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    resumed, masks_r, _ = checkpoint.restore_params(cut / "checkpoint")
    uninterrupted, masks_u, _ = checkpoint.restore_params(full / "checkpoint")
    for a, b in zip(jax.tree.leaves(uninterrupted), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree.leaves(masks_u), jax.tree.leaves(masks_r), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    logged = _logged_steps(cut / "distill" / "metrics.jsonl")
    assert logged == _logged_steps(full / "distill" / "metrics.jsonl")
    assert logged == sorted(set(logged)) and logged[-1] == 12
