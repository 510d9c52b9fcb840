"""Tests for mpjax.training.loop (and the config it runs): frozen masks, resume, data
parallelism, the schedule and a smoke training run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import hypothesis  # noqa: F401  (imported before orbax runs: CPython 3.11.7 AST bug)
import jax
import numpy as np
import optax
import pytest
from tiny_net import apply_fn, half_masks, init_params, small_config, tiny_data

from mpjax.pruning import apply_masks
from mpjax.training import evaluate, prepare_images
from mpjax.training.loop import (
    distill,
    make_optimizer,
    make_schedule,
    run_fingerprint,
    train,
)
from mpjax.training.masked import MaskedUpdatesState


def test_masked_distillation_never_revives_pruned_weights(tmp_path):
    teacher = init_params(0)
    masks = half_masks(teacher)
    student = apply_masks(teacher, masks)
    cfg = small_config(num_steps=6, augment=True)
    out, summary = distill(student, teacher, masks, apply_fn, tiny_data(), cfg, tmp_path)
    for path in ("Dense_0", "Dense_1"):
        w, m = np.asarray(out[path]["kernel"]), np.asarray(masks[path]["kernel"])
        assert np.all(w[~m] == 0.0) and np.any(w[m] != np.asarray(student[path]["kernel"])[m])
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["kl"] >= 0 for r in rows)
    assert summary["steps"] == 6
    # the caller's arrays were not donated away
    assert np.isfinite(np.asarray(teacher["Dense_0"]["kernel"])).all()


def test_resume_reproduces_uninterrupted_run(tmp_path):
    params, data = init_params(), tiny_data()
    masks = half_masks(params)
    cfg = small_config(num_steps=7, checkpoint_every=2, augment=True)
    full, _ = train(params, apply_fn, data, cfg, tmp_path / "full", masks=masks)
    # "pre-empted" after 5 steps (last periodic checkpoint at 4, forced one at 5) then resumed
    part, s1 = train(
        params,
        apply_fn,
        data,
        small_config(num_steps=7, checkpoint_every=2, augment=True, stop_after_steps=5),
        tmp_path / "cut",
        masks=masks,
    )
    assert s1["steps"] == 5
    resumed, s2 = train(params, apply_fn, data, cfg, tmp_path / "cut", masks=masks)
    assert s2["steps"] == 7
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(part), jax.tree.leaves(full), strict=True)
    )
    # a workdir holding another run (other masks) is refused, not silently resumed
    with pytest.raises(ValueError, match="fresh workdir"):
        train(params, apply_fn, data, cfg, tmp_path / "cut", masks=half_masks(params, 5))


def test_run_fingerprint_ignores_logging_but_not_settings():
    params = init_params()
    masks = half_masks(params)
    base = run_fingerprint(small_config(), 8, masks, True)
    assert run_fingerprint(small_config(log_every=3, progress=True), 8, masks, True) == base
    assert run_fingerprint(small_config(stop_after_steps=2), 8, masks, True) == base
    assert run_fingerprint(small_config(learning_rate=1e-3), 8, masks, True) != base
    assert run_fingerprint(small_config(), 9, masks, True) != base
    assert run_fingerprint(small_config(), 8, masks, False) != base
    assert run_fingerprint(small_config(), 8, half_masks(params, 5), True) != base


def test_schedule_warms_up_then_decays():
    cfg = small_config(learning_rate=0.1, warmup_steps=4, end_lr_fraction=0.1)
    lr = make_schedule(cfg, 20)
    assert float(lr(0)) == 0.0
    assert float(lr(2)) == pytest.approx(0.05)
    assert float(lr(4)) == pytest.approx(0.1)
    assert float(lr(20)) == pytest.approx(0.01)
    assert 0.01 < float(lr(12)) < 0.1
    # a run shorter than the warmup still reaches the peak on its last step
    assert float(make_schedule(cfg, 3)(2)) == pytest.approx(0.1)


def test_make_optimizer_is_masked_only_with_masks():
    params = init_params()
    cfg = small_config()
    assert not isinstance(make_optimizer(cfg, 8).init(params), MaskedUpdatesState)
    state = make_optimizer(cfg, 8, half_masks(params)).init(params)
    assert isinstance(state, MaskedUpdatesState)
    # clipping first, then AdamW
    assert isinstance(state.inner_state[0], optax.EmptyState)


def test_smoke_loss_falls_and_evaluate(tmp_path):
    images, labels = tiny_data(192)
    cfg = small_config(num_steps=40, weight_decay=0.0, learning_rate=1e-2, alpha=0.0)
    params0 = init_params()
    acc0 = evaluate(params0, apply_fn, images, labels, batch_size=50)
    params, summary = train(
        params0, apply_fn, (images, labels), cfg, tmp_path, eval_data=(images, labels)
    )
    losses = [
        json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
    ]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    acc = evaluate(params, apply_fn, images, labels, batch_size=50)  # padded last batch
    logits = apply_fn(params, prepare_images(images), False)
    assert acc == pytest.approx(float(np.mean(np.argmax(logits, -1) == labels)))
    assert acc > max(0.8, acc0) and summary["test_accuracy"] == pytest.approx(acc)


def test_batch_size_is_checked(tmp_path):
    params, (images, labels) = init_params(), tiny_data(10)
    with pytest.raises(ValueError, match="batch_size: 16 exceeds the 10 examples"):
        train(params, apply_fn, (images, labels), small_config(), tmp_path)


DP_SCRIPT = textwrap.dedent(
    """
    import json, sys, tempfile
    import jax, numpy as np
    sys.path.insert(0, {tests!r})
    from tiny_net import apply_fn, init_params, half_masks, tiny_data, small_config
    from mpjax.training.loop import distill
    assert jax.local_device_count() == 4, jax.devices()
    params, data = init_params(), tiny_data()
    masks = half_masks(params)
    out = {{}}
    for n in (4, 1):
        cfg = small_config(num_steps=5, num_devices=n, augment=True)
        p, _ = distill(params, params, masks, apply_fn, data, cfg, tempfile.mkdtemp())
        out[n] = [np.asarray(x) for x in jax.tree.leaves(p)]
        if n == 4:
            assert len(jax.tree.leaves(p)[0].sharding.device_set) == 4
    for a, b in zip(out[4], out[1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    print("DP-OK", max(float(np.abs(a - b).max()) for a, b in zip(out[4], out[1])))
    """
)


def test_data_parallel_matches_single_device():
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu"
    )
    script = DP_SCRIPT.format(tests=os.path.dirname(__file__))
    res = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "DP-OK" in res.stdout
