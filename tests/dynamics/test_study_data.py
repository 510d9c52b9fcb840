"""Tests of the study's inputs: max-norm scaling, the width init conventions."""

import dataclasses

import jax
import numpy as np
import pytest

from mpjax.dynamics import load_config, load_study_data
from mpjax.dynamics.data import max_norm_scale
from mpjax.dynamics.trainer import init_params


def test_max_norm_scaling_puts_the_largest_input_at_0_05(tiny):
    cfg = dataclasses.replace(tiny, input_scaling="max_norm")
    raw, d = load_study_data(tiny), load_study_data(cfg)
    norms = np.linalg.norm(np.concatenate([d.x_train, d.x_test]), axis=1)
    assert norms.max() == pytest.approx(0.05, rel=1e-6)
    assert norms.min() < 0.05 * 0.9  # one common factor, not a per-input normalisation
    c = d.x_train[0, 0] / raw.x_train[0, 0]
    np.testing.assert_allclose(d.x_test, raw.x_test * c, rtol=1e-5)


def test_max_norm_scale_uses_train_and_test():
    a, b = np.array([[3.0, 4.0]]), np.array([[6.0, 8.0], [0.0, 1.0]])
    assert max_norm_scale(a, b, 0.05) == pytest.approx(0.05 / 10)
    assert max_norm_scale(b, a, 1.0) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="zero"):
        max_norm_scale(np.zeros((2, 2)), np.zeros((1, 2)), 0.05)


def test_fashion_mnist_max_norm_inputs():
    cfg = dataclasses.replace(load_config("outer_faithful_cpu"), n_train=2000, n_test=500)
    d = load_study_data(cfg)
    norms = np.linalg.norm(np.concatenate([d.x_train, d.x_test]), axis=1)
    assert norms.max() == pytest.approx(0.05, rel=1e-6) and d.x_train.min() >= 0


@pytest.mark.parametrize("scaling, power", [("1/width", 1), ("1/width^2", 2)])
def test_width_inits_have_variance_g_over_width_power(tiny, scaling, power):
    cfg = dataclasses.replace(tiny, widths=(300, 200, 200, 10), init_scaling=scaling, g=1.0)
    p = init_params(cfg, jax.random.key(3))
    for i in range(3):
        k = np.asarray(p[f"Dense_{i}"]["kernel"])
        var = 1.0 / 200**power  # the hidden width, for the tall, square and wide layers alike
        assert np.var(k) == pytest.approx(var, rel=0.1), i
        assert np.all(np.asarray(p[f"Dense_{i}"]["bias"]) == 0)


def test_torch_init_is_uniform_over_fan_in(tiny):
    cfg = dataclasses.replace(tiny, widths=(400, 100, 50, 10), init_scaling="torch")
    p = init_params(cfg, jax.random.key(0))
    for i, fan_in in enumerate((400, 100, 50)):
        k, b = np.asarray(p[f"Dense_{i}"]["kernel"]), np.asarray(p[f"Dense_{i}"]["bias"])
        bound = 1 / np.sqrt(fan_in)
        assert np.abs(k).max() <= bound and np.abs(k).max() > 0.95 * bound
        assert np.var(k) == pytest.approx(bound**2 / 3, rel=0.1)
        assert np.abs(b).max() <= bound and np.any(b != 0)
