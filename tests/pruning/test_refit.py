"""Reconstruction on a fixed support against a per-row numpy least-squares oracle.

The oracle solves each row as an ordinary stacked least-squares problem with
``np.linalg.lstsq``: ``[X_K; sqrt(lam) I] w ~ [X W_i; sqrt(lam) W_iK]``, whose normal
equations are the documented damped system; it shares nothing with the CG solver.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import tree
from mpjax.pruning import RefitError, reconstruct, reconstruct_sequential, registry
from mpjax.pruning.masks import apply_masks

SHAPES = [(24, 16), (8, 32), (16, 16)]  # tall, wide, square (d_out, d_in)


def calib(rng, rows, d_in):
    A = rng.normal(size=(d_in, d_in)) / np.sqrt(d_in) + np.eye(d_in)
    return (rng.normal(size=(rows, d_in)) @ A * np.linspace(0.3, 3.0, d_in)).astype(np.float32)


def lstsq_rows(W, M, Xp, Xd=None, damp=0.01):
    """Per-row stacked least squares (float64): the damped refit of every row."""
    Xp = Xp.astype(np.float64)
    Xd = Xp if Xd is None else Xd.astype(np.float64)
    lam = damp * np.mean((Xp**2).sum(0))
    out = np.zeros(W.shape)
    for i in range(W.shape[0]):
        K = M[i]
        A = np.vstack([Xp[:, K], np.sqrt(lam) * np.eye(K.sum())])
        b = np.concatenate([Xd @ W[i], np.sqrt(lam) * W[i, K]])
        out[i, K] = np.linalg.lstsq(A, b, rcond=None)[0]
    return out


def rel_err(X, V, W):
    return np.linalg.norm(X @ (V - W).T) / np.linalg.norm(X @ W.T)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("method", "pattern", "s"),
                         [("magnitude", "unstructured", 0.6), ("magnitude", "2:4", None),
                          ("wanda", "4:8", None)])
def test_refit_matches_lstsq_and_never_raises_the_error(rng, shape, method, pattern, s):
    W = rng.normal(size=shape).astype(np.float32)
    X = calib(rng, 80, shape[1])
    params = {"lin": {"weight": jnp.asarray(W)}}
    kw = dict(calib_inputs={"lin/weight": X}) if method == "wanda" else dict(scope="layer")
    _, masks, _ = registry.prune(params, method, pattern, s, **kw)
    out, errs = reconstruct(params, masks, calib_inputs={"lin/weight": X})
    M = np.asarray(masks["lin"]["weight"])
    oracle = lstsq_rows(W, M, X)
    got = np.asarray(out["lin"]["weight"])
    np.testing.assert_allclose(got, oracle, atol=2e-3 * np.abs(oracle).max())
    assert not got[~M].any()
    e = errs["lin/weight"]
    assert isinstance(e, RefitError)
    assert e.before == pytest.approx(rel_err(X, np.where(M, W, 0), W), rel=1e-4)
    assert e.after == pytest.approx(rel_err(X, oracle, W), rel=1e-3)
    assert e.after < 0.9 * e.before  # correlated inputs: the refit helps a lot


def test_nothing_pruned_returns_the_dense_layer(rng):
    W = rng.normal(size=(8, 32)).astype(np.float32)
    params = {"lin": {"weight": jnp.asarray(W)}}
    masks = {"lin": {"weight": jnp.ones(W.shape, bool)}}
    out, errs = reconstruct(params, masks, calib_inputs={"lin/weight": calib(rng, 40, 32)})
    np.testing.assert_array_equal(np.asarray(out["lin"]["weight"]), W)
    assert errs["lin/weight"].before == 0.0 == errs["lin/weight"].after


def test_an_optimal_start_is_kept_and_errors_never_rise(rng):
    # Equality case: starting from the oracle, the refit cannot improve; it must not worsen.
    W = rng.normal(size=(16, 16)).astype(np.float32)
    X = calib(rng, 64, 16)
    params = {"lin": {"weight": jnp.asarray(W)}}
    _, masks, _ = registry.prune(params, "magnitude", "2:4")
    M = np.asarray(masks["lin"]["weight"])
    best = {"lin": {"weight": jnp.asarray(lstsq_rows(W, M, X), jnp.float32)}}
    _, errs = reconstruct(params, masks, pruned=best, calib_inputs={"lin/weight": X})
    e = errs["lin/weight"]
    assert e.after <= e.before <= e.after * (1 + 1e-4)


def test_rank_deficient_inputs_and_hessians_api(rng):
    W = rng.normal(size=(8, 32)).astype(np.float32)
    X = calib(rng, 6, 32)  # rank 6 of 32
    X[:, 3] = 0.0
    params = {"lin": {"weight": jnp.asarray(W)}}
    _, masks, _ = registry.prune(params, "magnitude", "2:4")
    out, errs = reconstruct(params, masks, hessians={"lin/weight": X.T @ X})
    got = np.asarray(out["lin"]["weight"])
    assert np.all(np.isfinite(got)) and errs["lin/weight"].after <= errs["lin/weight"].before
    oracle = lstsq_rows(W, np.asarray(masks["lin"]["weight"]), X)
    assert rel_err(X, got, W) == pytest.approx(rel_err(X, oracle, W), abs=1e-3)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="lin/weight: calibration inputs contain NaN"):
        reconstruct(params, masks, calib_inputs={"lin/weight": bad})
    with pytest.raises(ValueError, match="one of them"):
        reconstruct(params, masks)


def mlp(rng, dtype=jnp.float32):
    return {"Dense_0": {"kernel": jnp.asarray(rng.normal(size=(16, 24)) / 4, dtype)},
            "Dense_1": {"kernel": jnp.asarray(rng.normal(size=(24, 8)) / 5, dtype)}}


def test_sequential_refit_matches_a_layer_by_layer_oracle(rng):
    x = calib(rng, 64, 16)

    def capture(p):
        h = jax.nn.relu(x @ p["Dense_0"]["kernel"].astype(jnp.float32))
        return {"Dense_0/kernel": x, "Dense_1/kernel": np.asarray(h)}

    params = mlp(rng)
    _, masks, _ = registry.prune(params, "magnitude", "2:4")
    out, errs = reconstruct_sequential(params, masks, capture)
    views = tree.select(params)
    W0, W1 = (np.asarray(tree.to_matrix(tree.flatten(params)[p], views[p])) for p in views)
    M0, M1 = (np.asarray(tree.to_matrix(tree.flatten(masks)[p], views[p])) for p in views)
    V0 = lstsq_rows(W0, M0, x)
    hp, hd = np.maximum(x @ V0.T, 0), np.maximum(x @ W0.T, 0)
    V1 = lstsq_rows(W1, M1, hp, hd)  # pruned-model inputs, dense-model targets
    for p, V in zip(views, (V0, V1), strict=True):
        got = np.asarray(tree.to_matrix(tree.flatten(out)[p], views[p]))
        np.testing.assert_allclose(got, V, atol=2e-3 * np.abs(V).max())
        assert errs[p].after <= errs[p].before
    e1 = np.linalg.norm(hp @ V1.T - hd @ W1.T) / np.linalg.norm(hd @ W1.T)
    assert errs["Dense_1/kernel"].after == pytest.approx(e1, rel=1e-3)
    # The one-shot refit of layer 1 ignores the changed inputs: worse end-to-end here.
    one, _ = reconstruct(params, masks, calib_inputs=capture(params))
    end = lambda p: np.asarray(capture(p)["Dense_1/kernel"] @ p["Dense_1"]["kernel"])  # noqa: E731
    dense_out = end(params)
    assert np.linalg.norm(end(out) - dense_out) <= np.linalg.norm(end(one) - dense_out)
    with pytest.raises(ValueError, match="nope: in order="):
        reconstruct_sequential(params, masks, capture, order=["nope"])


def test_bfloat16_layers_keep_their_dtype(rng):
    params = mlp(rng, jnp.bfloat16)
    x = calib(rng, 32, 16)
    _, masks, _ = registry.prune(params, "magnitude", "2:4")
    pruned = apply_masks(params, masks)
    out, errs = reconstruct(params, masks, calib_inputs={"Dense_0/kernel": x})
    assert out["Dense_0"]["kernel"].dtype == jnp.bfloat16
    assert errs["Dense_0/kernel"].after <= errs["Dense_0/kernel"].before
    assert "Dense_1/kernel" not in errs  # no calibration: left as given
    np.testing.assert_array_equal(np.asarray(out["Dense_1"]["kernel"], np.float32),
                                  np.asarray(pruned["Dense_1"]["kernel"], np.float32))
