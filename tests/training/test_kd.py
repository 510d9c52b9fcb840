"""Tests for mpjax.training.kd: the distillation loss against its formula."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax.training.kd import kd_loss, kd_terms


def test_kd_loss_matches_formula(rng):
    s = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
    t = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 4, 5))
    a, tau, ls = 0.3, 2.0, 0.1
    target = (1 - ls) * np.eye(4)[np.asarray(y)] + ls / 4
    ce = -(target * np.asarray(jax.nn.log_softmax(s))).sum(-1).mean()
    pt, ps = np.asarray(jax.nn.softmax(t / tau)), np.asarray(jax.nn.softmax(s / tau))
    kl = (pt * (np.log(pt) - np.log(ps))).sum(-1).mean()
    got = kd_loss(s, t, y, alpha=a, tau=tau, label_smoothing=ls)
    np.testing.assert_allclose(got, (1 - a) * ce + a * tau**2 * kl, rtol=1e-5)
    np.testing.assert_allclose(kd_loss(s, None, y, label_smoothing=ls), ce, rtol=1e-5)
    # the teacher gets no gradient; the KD term vanishes when student == teacher
    assert float(jnp.abs(jax.grad(lambda t_: kd_loss(s, t_, y))(t)).max()) == 0.0
    assert float(kd_loss(s, s, y, alpha=1.0)) == pytest.approx(0.0, abs=1e-6)


def test_kd_terms_parts_add_up(rng):
    s = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
    t = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 6))
    terms = kd_terms(s, t, y, alpha=0.25, tau=3.0)
    assert float(terms["kl"]) > 0.0
    expected = 0.75 * terms["ce"] + 0.25 * 9.0 * terms["kl"]
    np.testing.assert_allclose(terms["loss"], expected, rtol=1e-6)
    alone = kd_terms(s, None, y)
    assert float(alone["kl"]) == 0.0 and float(alone["loss"]) == float(alone["ce"])
