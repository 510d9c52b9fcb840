"""Tests for mpjax.training.masked: frozen masks inside any optax optimizer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tiny_net import half_masks, init_params

from mpjax.training.masked import MaskedUpdatesState, masked_updates


def test_masked_updates_zero_pruned_weights_and_state():
    params = init_params()
    masks = half_masks(params)
    tx = masked_updates(optax.adamw(0.1, weight_decay=0.5), masks)
    state = tx.init(params)  # params NOT pre-masked: the first update must zero them
    assert isinstance(state, MaskedUpdatesState)

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
        masked_updates(optax.sgd(0.1), bad).init(params)
