"""Tests for mpjax.training.images: the one conversion from pixels to model input."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from mpjax.training.images import prepare_images


def test_integer_pixels_are_scaled_and_get_a_channel_axis(rng):
    pixels = rng.integers(0, 256, (3, 5, 4)).astype(np.uint8)
    x = prepare_images(pixels)
    assert x.shape == (3, 5, 4, 1) and x.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(x)[..., 0], pixels / 255.0, rtol=1e-6)


def test_channels_kept_and_floats_pass_through(rng):
    rgb = rng.integers(0, 256, (2, 4, 4, 3)).astype(np.int32)
    assert prepare_images(rgb).shape == (2, 4, 4, 3)
    floats = rng.random((2, 4, 4, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(prepare_images(floats)), floats)
    once = prepare_images(rgb)
    np.testing.assert_array_equal(np.asarray(prepare_images(once)), np.asarray(once))
