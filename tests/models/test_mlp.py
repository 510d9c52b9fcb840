"""Tests for mpjax.models.mlp."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax.models import mlp


def test_names_shapes_and_forward(key):
    widths = (20, 30, 40, 5)
    p = mlp.init(widths, key)
    assert sorted(p) == ["Dense_0", "Dense_1", "Dense_2"]
    for i in range(3):
        assert p[f"Dense_{i}"]["kernel"].shape == (widths[i], widths[i + 1])
        assert not np.any(p[f"Dense_{i}"]["bias"])
    x = jax.random.normal(key, (4, 4, 5))  # flattened to 20 features
    model = mlp.MLP(widths)
    logits = model.apply({"params": p}, x)
    h = x.reshape(4, -1)
    for i in range(3):
        h = h @ p[f"Dense_{i}"]["kernel"] + p[f"Dense_{i}"]["bias"]
        h = jax.nn.relu(h) if i < 2 else h
    np.testing.assert_allclose(logits, h, rtol=1e-5, atol=1e-5)


def test_abs_activation_and_no_bias(key):
    model = mlp.MLP((6, 8, 3), activation="abs", use_bias=False)
    p = model.init(key, jnp.ones((1, 6)))["params"]
    assert "bias" not in p["Dense_0"]
    x = jax.random.normal(key, (2, 6))
    want = jnp.abs(x @ p["Dense_0"]["kernel"]) @ p["Dense_1"]["kernel"]
    np.testing.assert_allclose(model.apply({"params": p}, x), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("g,scaling", [(1.0, "1/N"), (2.0, "1/N"), (1.0, "1/N^2")])
def test_init_variance(key, g, scaling):
    n_in = 400
    p = mlp.init((n_in, 300, 10), key, g=g, init_scaling=scaling)
    w = np.asarray(p["Dense_0"]["kernel"])
    want = g / n_in if scaling == "1/N" else g / n_in**2
    assert abs(w.var() / want - 1) < 0.03  # 120000 samples: relative sd ~ 0.4%
    assert abs(w.mean()) < 4 * np.sqrt(want / w.size)
    # MP bulk edge sqrt(g)(1 + sqrt(c)) for the "1/N" case, W of shape (300, 400)
    if scaling == "1/N":
        s = np.linalg.svd(w.T, compute_uv=False)
        assert abs(s[0] / (np.sqrt(g) * (1 + np.sqrt(300 / 400))) - 1) < 0.05


def test_sow_layer_inputs(key):
    model = mlp.MLP((12, 7, 3))
    p = model.init(key, jnp.ones((1, 12)))["params"]
    x = jax.random.normal(key, (5, 12))
    logits, inputs = mlp.layer_inputs(model, p, x)
    np.testing.assert_allclose(inputs[0], x)
    want = jax.nn.relu(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
    np.testing.assert_allclose(inputs[1], want, rtol=1e-6)
    np.testing.assert_allclose(
        logits, want @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"], rtol=1e-5
    )


def test_validation(key):
    with pytest.raises(ValueError, match="activation"):
        mlp.init((4, 3), key, activation="gelu2")
    with pytest.raises(ValueError, match="init_scaling"):
        mlp.init((4, 3), key, init_scaling="1/sqrt(N)")
    p = mlp.init((4, 3), key)
    with pytest.raises(ValueError, match="widths"):
        mlp.MLP((4, 3)).apply({"params": p}, jnp.ones((2, 5)))
