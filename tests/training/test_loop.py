"""Tests for mpjax.training.loop: KD loss, frozen masks, resume, data parallelism, smoke training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import hypothesis  # noqa: F401  (imported before orbax runs: CPython 3.11.7 AST bug)
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mpjax.pruning import masks as masks_lib
from mpjax.training import loop as distill


class TinyNet(nn.Module):
    """A 2-layer MLP on [B, H, W, C] images."""

    hidden: int = 16
    classes: int = 3

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(self.classes)(nn.relu(nn.Dense(self.hidden)(x)))


MODEL = TinyNet()


def apply_fn(params, images, train):
    return MODEL.apply({"params": params}, images, train)


def tiny_data(n: int = 96, seed: int = 0):
    """Three classes of 6x6 uint8 images: a bright row per class plus noise."""
    r = np.random.default_rng(seed)
    labels = r.integers(0, 3, n).astype(np.int32)
    images = r.integers(0, 60, (n, 6, 6)).astype(np.uint8)
    images[np.arange(n), labels * 2, :] = 220
    return images, labels


def init_params(seed: int = 0):
    return MODEL.init(jax.random.PRNGKey(seed), jnp.zeros((1, 6, 6, 1)))["params"]


def half_masks(params, seed: int = 1):
    r = np.random.default_rng(seed)
    return jax.tree_util.tree_map_with_path(
        lambda p, x: (
            jnp.asarray(r.random(x.shape) < 0.5) if "kernel" in jax.tree_util.keystr(p) else None
        ),
        params,
    )


def small_config(**kw) -> distill.Config:
    base = dict(
        learning_rate=3e-2,
        warmup_steps=2,
        batch_size=16,
        num_steps=8,
        log_every=1,
        progress=False,
        weight_decay=0.1,
    )
    return distill.Config(**{**base, **kw})


def test_kd_loss_matches_formula(rng):
    s = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
    t = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 4, 5))
    a, tau, ls = 0.3, 2.0, 0.1
    target = (1 - ls) * np.eye(4)[np.asarray(y)] + ls / 4
    ce = -(target * np.asarray(jax.nn.log_softmax(s))).sum(-1).mean()
    pt, ps = np.asarray(jax.nn.softmax(t / tau)), np.asarray(jax.nn.softmax(s / tau))
    kl = (pt * (np.log(pt) - np.log(ps))).sum(-1).mean()
    got = distill.kd_loss(s, t, y, alpha=a, tau=tau, label_smoothing=ls)
    np.testing.assert_allclose(got, (1 - a) * ce + a * tau**2 * kl, rtol=1e-5)
    np.testing.assert_allclose(distill.kd_loss(s, None, y, label_smoothing=ls), ce, rtol=1e-5)
    # the teacher gets no gradient; the KD term vanishes when student == teacher
    assert float(jnp.abs(jax.grad(lambda t_: distill.kd_loss(s, t_, y))(t)).max()) == 0.0
    assert float(distill.kd_loss(s, s, y, alpha=1.0)) == pytest.approx(0.0, abs=1e-6)


def test_masked_updates_zero_pruned_weights_and_state():
    params = init_params()
    masks = half_masks(params)
    tx = distill.masked_updates(optax.adamw(0.1, weight_decay=0.5), masks)
    state = tx.init(params)  # params NOT pre-masked: the first update must zero them

    @jax.jit
    def step(params, state, scale):
        grads = jax.tree.map(lambda x: jnp.full_like(x, scale), params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for i in range(3):
        params, state = step(params, state, 1.0 + i)
        for m, p in [
            (masks["Dense_0"]["kernel"], params["Dense_0"]["kernel"]),
            (masks["Dense_1"]["kernel"], params["Dense_1"]["kernel"]),
        ]:
            assert np.all(np.asarray(p)[~np.asarray(m)] == 0.0)
            assert np.any(np.asarray(p)[np.asarray(m)] != 0.0)
    adam = state.inner_state[0]
    for moment in (adam.mu, adam.nu):
        assert np.all(
            np.asarray(moment["Dense_0"]["kernel"])[~np.asarray(masks["Dense_0"]["kernel"])] == 0
        )
    bad = dict(masks, Dense_1={"kernel": jnp.ones((2, 2), bool), "bias": None})
    with pytest.raises(ValueError, match="Dense_1/kernel"):
        distill.masked_updates(optax.sgd(0.1), bad).init(params)


def test_masked_distillation_never_revives_pruned_weights(tmp_path):
    teacher = init_params(0)
    masks = half_masks(teacher)
    student = masks_lib.apply_masks(teacher, masks)
    cfg = small_config(num_steps=6, augment=True)
    out, summary = distill.distill(student, teacher, masks, apply_fn, tiny_data(), cfg, tmp_path)
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
    full, _ = distill.fit(params, apply_fn, data, cfg, tmp_path / "full", masks=masks)
    # "pre-empted" after 5 steps (last periodic checkpoint at 4, forced one at 5) then resumed
    part, s1 = distill.fit(
        params,
        apply_fn,
        data,
        small_config(num_steps=7, checkpoint_every=2, augment=True, stop_after_steps=5),
        tmp_path / "cut",
        masks=masks,
    )
    assert s1["steps"] == 5
    resumed, s2 = distill.fit(params, apply_fn, data, cfg, tmp_path / "cut", masks=masks)
    assert s2["steps"] == 7
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(part), jax.tree.leaves(full), strict=True)
    )
    # a workdir holding another run (other masks) is refused, not silently resumed
    with pytest.raises(ValueError, match="fresh workdir"):
        distill.fit(params, apply_fn, data, cfg, tmp_path / "cut", masks=half_masks(params, 5))


def test_smoke_loss_falls_and_evaluate(tmp_path):
    images, labels = tiny_data(192)
    cfg = small_config(num_steps=40, weight_decay=0.0, learning_rate=1e-2, alpha=0.0)
    params0 = init_params()
    acc0 = distill.evaluate(params0, apply_fn, images, labels, batch_size=50)
    params, summary = distill.fit(
        params0, apply_fn, (images, labels), cfg, tmp_path, eval_data=(images, labels)
    )
    losses = [
        json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
    ]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    acc = distill.evaluate(params, apply_fn, images, labels, batch_size=50)  # padded last batch
    logits = apply_fn(params, distill.prepare_images(images), False)
    assert acc == pytest.approx(float(np.mean(np.argmax(logits, -1) == labels)))
    assert acc > max(0.8, acc0) and summary["test_accuracy"] == pytest.approx(acc)


DP_SCRIPT = textwrap.dedent(
    """
    import json, sys, tempfile
    import jax, numpy as np
    sys.path.insert(0, {tests!r})
    from test_loop import apply_fn, init_params, half_masks, tiny_data, small_config
    from mpjax.training import loop as distill
    assert jax.local_device_count() == 4, jax.devices()
    params, data = init_params(), tiny_data()
    masks = half_masks(params)
    out = {{}}
    for n in (4, 1):
        cfg = small_config(num_steps=5, num_devices=n, augment=True)
        p, _ = distill.distill(params, params, masks, apply_fn, data, cfg, tempfile.mkdtemp())
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
