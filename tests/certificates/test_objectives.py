"""Tests for mpjax.certificates.objectives: cross-entropy, elastic-net objective, margins."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpjax.certificates.objectives import (
    accuracy,
    cross_entropy,
    elastic_net_objective,
    elastic_net_penalty,
    l1_penalty,
    l2_penalty,
    params_penalty,
    per_sample_cross_entropy,
    predicted_margin,
    true_margin,
)


def _np_ce(z, y):
    z = np.asarray(z, np.float64)
    m = z.max(1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(1))
    return lse - z[np.arange(len(y)), y]


@pytest.mark.parametrize("seed", range(4))
def test_cross_entropy_matches_numpy_oracle(seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(17, 6)) * 3
    y = rng.integers(0, 6, 17)
    np.testing.assert_allclose(per_sample_cross_entropy(z, y), _np_ce(z, y), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cross_entropy(z, y), _np_ce(z, y).mean(), rtol=1e-5, atol=1e-6)


def test_ce_is_two_lipschitz_in_linf(rng):
    # |ce(z) - ce(z')| <= 2 ||z - z'||_inf: the constant behind the factor 2 of B_T.
    z = rng.normal(size=(200, 5)) * 4
    dz = rng.uniform(-1, 1, size=z.shape) * rng.uniform(0, 2, size=(200, 1))
    y = rng.integers(0, 5, 200)

    def ce(v, t):  # the library's CE, not the numpy oracle
        return np.asarray(per_sample_cross_entropy(v, np.asarray(t)), np.float64)

    diff = np.abs(ce(z + dz, y) - ce(z, y))
    assert np.all(diff <= 2 * np.abs(dz).max(1) + 1e-5)  # float32 rounding of CE ~ 10
    # and the constant 2 is approached: push the true logit down, the others up
    z0 = np.zeros((1, 5))
    z0[0, 0] = -30.0
    step = np.full((1, 5), 0.01)
    step[0, 0] = -0.01
    ratio = (ce(z0 + step, [0]) - ce(z0, [0])) / 0.01
    assert ratio[0] > 1.99


def test_elastic_net_objective_and_weights():
    a = jnp.array([[1.0, -2.0], [0.0, 3.0]])
    w = jnp.array([[1.0, 0.0], [2.0, 0.5]])
    assert float(l2_penalty(a)) == pytest.approx(14.0)
    assert float(l1_penalty(a)) == pytest.approx(6.0)
    assert float(l2_penalty(a, w)) == pytest.approx(1 + 0 + 0 + 4.5)
    assert float(l1_penalty(a, w)) == pytest.approx(1 + 0 + 0 + 1.5)
    z, y = jnp.zeros((3, 4)), jnp.array([0, 1, 2])
    j = elastic_net_objective(z, y, {"a": a, "b": 2 * a}, l1=0.1, l2=0.01)
    assert float(j) == pytest.approx(np.log(4) + 0.01 * 14 * 5 + 0.1 * 6 * 3, rel=1e-6)


def test_params_penalty_skips_biases():
    params = {"Dense_0": {"kernel": jnp.ones((3, 2)), "bias": 100 * jnp.ones(2)}}
    assert float(params_penalty(params, l1=1.0, l2=0.0)) == pytest.approx(6.0)


def test_params_penalty_takes_traced_strengths(rng):
    """Per-member strengths under vmap and jit (as the L2 dynamics study trains members)."""
    kernels = [rng.normal(size=(5, 4)), rng.normal(size=(4, 3))]
    params = {f"Dense_{i}": {"kernel": jnp.asarray(k, jnp.float32)} for i, k in enumerate(kernels)}
    l1, l2 = jnp.array([0.0, 0.1, 0.5]), jnp.array([1.0, 0.0, 2.0])
    got = jax.jit(jax.vmap(params_penalty, in_axes=(None, 0, 0)))(params, l1, l2)
    sq = sum(float(np.sum(k**2)) for k in kernels)
    ab = sum(float(np.sum(np.abs(k))) for k in kernels)
    np.testing.assert_allclose(got, np.asarray(l2) * sq + np.asarray(l1) * ab, rtol=1e-5)
    with pytest.raises(ValueError):
        params_penalty(params, l1=0.0, l2=-1.0)


def test_margins_with_ties():
    z = jnp.array([[1.0, 3.0, 3.0], [5.0, 1.0, 2.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(predicted_margin(z), [0.0, 3.0, 0.0])
    np.testing.assert_allclose(true_margin(z, jnp.array([1, 0, 2])), [0.0, 3.0, 0.0])
    np.testing.assert_allclose(true_margin(z, jnp.array([0, 2, 1])), [-2.0, -3.0, 0.0])
    assert float(accuracy(z, jnp.array([1, 0, 0]))) == pytest.approx(1.0)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 6))
def test_true_margin_sign_is_correctness(seed, classes):
    rng = np.random.default_rng(seed)
    z = jnp.asarray(rng.integers(-3, 4, size=(12, classes)).astype(np.float32))  # many ties
    y = jnp.asarray(rng.integers(0, classes, 12))
    tm = np.asarray(true_margin(z, y))
    pred = np.asarray(jnp.argmax(z, 1))
    assert np.all(pred[tm > 0] == np.asarray(y)[tm > 0])
    assert np.all(pred[tm < 0] != np.asarray(y)[tm < 0])
    assert np.all(np.asarray(predicted_margin(z)) >= 0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: cross_entropy(jnp.zeros(3), jnp.zeros(3, int)),
        lambda: cross_entropy(jnp.zeros((3, 2)), jnp.zeros(4, int)),
        lambda: cross_entropy(jnp.zeros((3, 2)), jnp.zeros(3)),
        lambda: predicted_margin(jnp.zeros((3, 1))),
        lambda: elastic_net_penalty(jnp.ones((2, 2)), l1=-1.0, l2=0.0),
    ],
)
def test_bad_inputs_raise(call):
    with pytest.raises(ValueError):
        call()


def test_cross_entropy_jits():
    f = jax.jit(cross_entropy)
    z, y = jnp.ones((4, 3)), jnp.array([0, 1, 2, 0])
    assert float(f(z, y)) == pytest.approx(float(cross_entropy(z, y)))
