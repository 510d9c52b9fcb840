"""Tests for mpjax.training.runs (and how the loop uses it): periodic checkpoints by default,
resume messages, metrics rows without duplicates, and the stop on a non-finite loss."""

from __future__ import annotations

import json

import hypothesis  # noqa: F401  (imported before orbax runs: CPython 3.11.7 AST bug)
import jax
import numpy as np
import pytest
from tiny_net import apply_fn, half_masks, init_params, small_config, tiny_data

from mpjax import data as data_lib
from mpjax.checkpoint import TrainCheckpointer
from mpjax.training import DistillConfig, checkpoint_interval, distill, train
from mpjax.training.runs import truncate_metrics


def _steps(path):
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_default_checkpoint_interval_saves_a_400_step_run_several_times():
    assert checkpoint_interval(DistillConfig(), 400) == 100  # saves at 100, 200, 300, 400
    assert checkpoint_interval(DistillConfig(), 20) == 5
    assert checkpoint_interval(DistillConfig(), 2) == 1
    assert checkpoint_interval(DistillConfig(), 10_000) == 100  # cheap: not every step
    assert checkpoint_interval(DistillConfig(checkpoint_every=0), 30) == 30
    assert checkpoint_interval(DistillConfig(checkpoint_every=7), 30) == 7
    with pytest.raises(ValueError, match="checkpoint_every"):
        checkpoint_interval(DistillConfig(checkpoint_every=-1), 30)


def test_default_config_checkpoints_before_the_end(tmp_path):
    cfg = small_config(num_steps=12, stop_after_steps=10)  # checkpoint_every left at default
    train(init_params(), apply_fn, tiny_data(), cfg, tmp_path)
    # every 3 steps (12 // 4), plus the forced save where the run stopped; two are kept
    assert TrainCheckpointer(tmp_path / "checkpoints", 1).all_steps() == [9, 10]


def test_truncate_metrics_keeps_rows_up_to_the_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [json.dumps({"step": s, "loss": 1.0}) for s in (1, 2, 3, 4, 5)]
    path.write_text("\n".join(rows) + '\n{"step": 6, "lo')  # the kill cut the last line
    truncate_metrics(path, 3)
    assert _steps(path) == [1, 2, 3] and path.read_text().endswith("\n")
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]  # no temporary left
    truncate_metrics(path, 0)
    assert path.read_text() == ""
    truncate_metrics(tmp_path / "absent.jsonl", 3)  # nothing to do
    assert not (tmp_path / "absent.jsonl").exists()


def test_resume_prints_and_logs_each_step_once(tmp_path, capsys):
    params, data = init_params(), tiny_data()
    masks = half_masks(params)
    cfg = small_config(num_steps=8, checkpoint_every=4)
    full, _ = distill(params, params, masks, apply_fn, data, cfg, tmp_path / "full")
    # A run killed after step 6: its last checkpoint is at step 4, but it had logged 5 and 6
    # (and half of a row) before the kill.
    cut = tmp_path / "cut"
    distill(params, params, masks, apply_fn, data, small_config(
        num_steps=8, checkpoint_every=4, stop_after_steps=4), cut)  # fmt: skip
    log = cut / "metrics.jsonl"
    late = [json.dumps({"step": s, "loss": 9.0}) for s in (5, 6)]
    log.write_text(log.read_text() + "\n".join(late) + '\n{"step": 7, "lo')
    capsys.readouterr()
    resumed, summary = distill(params, params, masks, apply_fn, data, cfg, cut)
    assert "resuming from step 4" in capsys.readouterr().err
    assert summary["steps"] == 8
    assert _steps(log) == list(range(1, 9))  # no duplicate rows, no half rows
    assert _steps(tmp_path / "full" / "metrics.jsonl") == list(range(1, 9))
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _poisoned_data(step: int, batch_size: int = 16):
    """Tiny float data with one NaN image, seen first at (1-based) ``step`` of seed 0."""
    images, labels = tiny_data()
    images = images.astype(np.float32) / 255.0
    perm = data_lib.epoch_permutation(len(images), 0, 0)
    images[perm[(step - 1) * batch_size]] = np.nan
    return images, labels


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    params = init_params()
    cfg = small_config(num_steps=12, checkpoint_every=2, log_every=1)
    with pytest.raises(ValueError, match="loss became NaN at step 5") as err:
        train(params, apply_fn, _poisoned_data(5), cfg, tmp_path)
    ckpt = TrainCheckpointer(tmp_path / "checkpoints", 1)
    assert ckpt.latest_step() == 4  # nothing saved after the NaN
    assert f"last good checkpoint kept at {tmp_path / 'checkpoints' / '4'}" in str(err.value)
    state, _ = ckpt.restore(_abstract_state(params, cfg, tmp_path))
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state))
    assert max(_steps(tmp_path / "metrics.jsonl")) == 4  # no NaN row logged
    ckpt.close()


def test_nan_before_the_first_checkpoint_says_so(tmp_path):
    cfg = small_config(num_steps=12, checkpoint_every=4, log_every=3)
    with pytest.raises(ValueError, match="loss became NaN at step 2; no checkpoint was saved"):
        train(init_params(), apply_fn, _poisoned_data(2), cfg, tmp_path)


def _abstract_state(params, cfg, workdir):
    """The state pytree a run of :func:`train` checkpoints (teacher-less), for restoring."""
    from mpjax.training.loop import TrainState, make_optimizer

    state = TrainState.create(params, apply_fn, make_optimizer(cfg, cfg.num_steps), cfg)
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
