"""N:M masks: builders against the independent validator, indivisible layers, detection."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax.arch import NMPattern
from mpjax.pruning import nm

PATTERNS = [(1, 4), (2, 4), (3, 4), (4, 8), (6, 12), (8, 16), (12, 16)]


def dense_tree(rng, d_in=48, d_out=24):
    return {
        "Dense_0": {"kernel": jnp.asarray(rng.normal(size=(d_in, d_out)), jnp.float32),
                    "bias": jnp.zeros(d_out)},
        "attn": {"value": {"kernel": jnp.asarray(rng.normal(size=(d_in, 2, 8)), jnp.float32)}},
    }


@pytest.mark.parametrize(("k", "n"), PATTERNS)
def test_nm_masks_valid_and_keep_top_k(rng, k, n):
    p = dense_tree(rng)
    m = nm.nm_masks(p, k, n)
    assert nm.validate_nm(m, k, n) == {}
    W = np.abs(np.asarray(p["Dense_0"]["kernel"]).T).reshape(24, -1, n)
    M = np.asarray(m["Dense_0"]["kernel"]).T.reshape(24, -1, n)
    kth = -np.sort(-W, axis=-1)[..., k - 1 : k]
    assert np.all(W[M] >= np.broadcast_to(kth, W.shape)[M])
    assert m["Dense_0"]["bias"] is None


def test_validator_is_independent_and_catches_errors(rng):
    p = dense_tree(rng)
    m = nm.nm_masks(p, 2, 4)
    bad = np.asarray(m["Dense_0"]["kernel"]).copy()
    bad[5, 3] = ~bad[5, 3]  # leaf (in, out): input 5 of output 3 -> group 1
    m2 = jax.tree.map(lambda x: x, m, is_leaf=lambda x: x is None)
    m2["Dense_0"]["kernel"] = bad
    probs = nm.validate_nm(m2, 2, 4, raise_on_error=False)
    assert list(probs) == ["Dense_0/kernel"] and "row 3, group 1" in probs["Dense_0/kernel"]
    with pytest.raises(ValueError, match="Dense_0/kernel"):
        nm.validate_nm(m2, 2, 4)
    m2["Dense_0"]["kernel"] = np.asarray(m["Dense_0"]["kernel"], np.float32)
    assert "dtype" in nm.validate_nm(m2, 2, 4, raise_on_error=False)["Dense_0/kernel"]
    # groups run along d_in: the transposed layout is not a valid 2:4 mask
    t = {"Dense_0": {"kernel": np.asarray(m["Dense_0"]["kernel"]).T.reshape(48, 24)}}
    assert nm.validate_nm(t, 2, 4, raise_on_error=False)


def test_indivisible_error_or_skip(rng):
    p = {"Dense_0": {"kernel": jnp.ones((10, 8))}, "Dense_1": {"kernel": jnp.ones((8, 4))}}
    with pytest.raises(ValueError, match="Dense_0/kernel.*d_in=10"):
        nm.nm_masks(p, 2, 4)
    with pytest.warns(UserWarning, match="skipped"):
        m = nm.nm_masks(p, 2, 4, on_indivisible="skip")
    assert m["Dense_0"]["kernel"] is None and m["Dense_1"]["kernel"] is not None
    with pytest.raises(ValueError, match="on_indivisible"):
        nm.nm_masks(p, 2, 4, on_indivisible="pad")


@pytest.mark.parametrize(("k", "n"), PATTERNS)
def test_detect_pattern_finds_the_built_pattern(rng, k, n):
    m = nm.nm_matrix_mask(jnp.asarray(rng.normal(size=(6, 48))), k, n)
    assert nm.detect_pattern(np.asarray(m)) == NMPattern(k, n)
    broken = np.asarray(m).copy()
    broken[0, 0] = ~broken[0, 0]
    assert nm.detect_pattern(broken) is None
