"""SER prune-restore and the Hybrid schedule."""

import jax
import jax.numpy as jnp
import numpy as np

from mpjax.pruning import masks, ser


def _quad_params(rng):
    return {"Dense_0": {"kernel": jnp.asarray(rng.normal(size=(16, 8)), jnp.float32),
                        "bias": jnp.zeros(8)}}


def test_ser_restores_what_the_gradient_wants(rng):
    params = _quad_params(rng)
    target = np.asarray(params["Dense_0"]["kernel"]).copy()
    target[0, 0] = 50.0  # the loss wants entry (0, 0) large
    params["Dense_0"]["kernel"] = params["Dense_0"]["kernel"].at[0, 0].set(1e-4)

    def grad_fn(p):
        return jax.grad(lambda q: 0.5 * jnp.sum((q["Dense_0"]["kernel"] - target) ** 2))(p)

    out, m, info = ser.ser(params, 0.5, grad_fn, steps=1, lr=0.1)
    mk = np.asarray(m["Dense_0"]["kernel"])
    assert mk.size - mk.sum() == 64
    assert not np.asarray(info.over_masks["Dense_0"]["kernel"])[0, 0]
    assert mk[0, 0] and int(info.n_restored) == 4
    kept = np.asarray(info.over_masks["Dense_0"]["kernel"])
    np.testing.assert_array_equal(np.asarray(out["Dense_0"]["kernel"])[kept],
                                  np.asarray(params["Dense_0"]["kernel"])[kept])
    p1, m1 = ser.hybrid(params, 0.15, grad_fn)
    ref = masks.magnitude_masks(params, 0.15, scope="global")
    np.testing.assert_array_equal(np.asarray(m1["Dense_0"]["kernel"]),
                                  np.asarray(ref["Dense_0"]["kernel"]))
