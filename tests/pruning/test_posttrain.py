"""Wanda, RIA and SparseGPT against straightforward numpy versions of their definitions.

The oracles below are written from the formulas (float64 numpy, explicit loops, stable
argsorts), not from the library code: per-row ``floor(s d_in)`` removal for Wanda/RIA, and
SparseGPT's block sweep with the inverse taken by ``np.linalg.inv`` and the upper factor by
``np.linalg.cholesky``.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import tree
from mpjax.pruning import nm, posttrain, registry
from mpjax.pruning.sparsegpt import damped_inverse_factor, sparsegpt_matrix

SHAPES = [(24, 16), (8, 32), (16, 16)]  # tall, wide, square (d_out, d_in)


def calib(rng, rows, d_in):
    """Correlated inputs with unequal feature scales (so ||X_j|| matters)."""
    A = rng.normal(size=(d_in, d_in)) / np.sqrt(d_in) + np.eye(d_in)
    return (rng.normal(size=(rows, d_in)) @ A * np.linspace(0.3, 3.0, d_in)).astype(np.float32)


def np_row_prune(score, s=None, k=None, n=None):
    """Keep-mask: per row remove floor(s d_in) lowest; or keep the top k of each group of n."""
    d_out, d_in = score.shape
    keep = np.ones(score.shape, bool)
    for i in range(d_out):
        if n is None:
            drop = np.argsort(score[i], kind="stable")[: int(math.floor(s * d_in + 1e-9))]
            keep[i, drop] = False
        else:
            for g in range(0, d_in, n):
                order = np.argsort(-score[i, g:g + n], kind="stable")
                keep[i, g + order[k:]] = False
    return keep


def np_wanda(W, X):
    return np.abs(W) * np.sqrt((X.astype(np.float64) ** 2).sum(0))[None, :]


def np_ria(W, X, a=0.5):
    A = np.abs(W).astype(np.float64)
    out = np.zeros_like(A)
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            out[i, j] = A[i, j] / A[:, j].sum() + A[i, j] / A[i, :].sum()
    return out * np.sqrt((X.astype(np.float64) ** 2).sum(0))[None, :] ** a


def np_sparsegpt(W, H, s=None, k=None, n=None, B=128, damp=0.01):
    W, H = W.astype(np.float64).copy(), H.astype(np.float64).copy()
    d_out, d = W.shape
    dead = np.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H += damp * np.mean(np.diag(H)) * np.eye(d)
    U = np.linalg.cholesky(np.linalg.inv(H)).T  # upper, H^-1 = U^T U
    M = np.ones(W.shape, bool)
    width = (B // n) * n if n else B
    removed = lambda c: math.ceil(s * c * d_out - 0.5)  # noqa: E731
    for i1 in range(0, d, width):
        i2 = min(i1 + width, d)
        W1, U1, M1 = W[:, i1:i2].copy(), U[i1:i2, i1:i2], np.ones((d_out, i2 - i1), bool)
        E = np.zeros_like(W1)
        if n is None:
            score = (W1 / np.diag(U1)[None, :]) ** 2
            drop = np.argsort(score.ravel(), kind="stable")[: removed(i2) - removed(i1)]
            M1.ravel()[drop] = False
        for c in range(i2 - i1):
            if n is not None and c % n == 0:
                score = (W1[:, c:c + n] / np.diag(U1)[None, c:c + n]) ** 2
                for r in range(d_out):
                    M1[r, c + np.argsort(score[r], kind="stable")[: n - k]] = False
            q = np.where(M1[:, c], W1[:, c], 0.0)
            e = (W1[:, c] - q) / U1[c, c]
            W1[:, c:] -= np.outer(e, U1[c, c:])
            E[:, c] = e
        W[:, i1:i2], M[:, i1:i2] = np.where(M1, W1, 0.0), M1
        W[:, i2:] -= E @ U[i1:i2, i2:]
    return W, M


def one_layer(rng, shape, dtype=jnp.float32):
    W = rng.normal(size=shape).astype(np.float32)
    params = {"lin": {"weight": jnp.asarray(W, dtype)}}  # torch layout: (d_out, d_in)
    X = calib(rng, 64, shape[1])
    return params, W, X


# Every shape meets every pattern across the two methods, without the full product.
SCORED = [(shape, target) for shape, target in zip(
    SHAPES + SHAPES[::-1],
    [("unstructured", 0.3, None, None), ("2:4", None, 2, 4), ("4:8", None, 4, 8)] * 2,
    strict=True)]


@pytest.mark.parametrize(("shape", "target"), SCORED)
@pytest.mark.parametrize(("method", "oracle"), [("wanda", np_wanda), ("ria", np_ria)])
def test_scored_methods_match_numpy(rng, shape, target, method, oracle):
    pattern, s, k, n = target
    params, W, X = one_layer(rng, shape)
    out, m, _ = registry.prune(params, method, pattern, s, calib_inputs={"lin/weight": X})
    keep = np_row_prune(oracle(W, X), s=s, k=k, n=n)
    np.testing.assert_array_equal(np.asarray(m["lin"]["weight"]), keep)
    np.testing.assert_array_equal(np.asarray(out["lin"]["weight"]), np.where(keep, W, 0))
    if n is not None:  # the library validator and an independent count
        nm.validate_nm(m, k, n)
        assert np.all(keep.reshape(shape[0], -1, n).sum(-1) == k)
    else:
        assert np.all((~keep).sum(1) == math.floor(s * shape[1]))


def test_wanda_differs_from_magnitude_when_norms_differ(rng):
    # A control: with one input 100x louder, Wanda keeps its weights and magnitude does not.
    params, W, X = one_layer(rng, (16, 16))
    X[:, 0] *= 100.0
    _, mw, _ = registry.prune(params, "wanda", sparsity=0.5, calib_inputs={"lin/weight": X})
    _, mm, _ = registry.prune(params, "magnitude", sparsity=0.5, scope="layer")
    assert np.asarray(mw["lin"]["weight"])[:, 0].all()
    assert not np.asarray(mm["lin"]["weight"])[:, 0].all()


@pytest.mark.parametrize(("shape", "s", "k", "n"),
                         [((24, 32), 0.5, None, None), ((8, 48), 0.3, None, None),
                          ((32, 32), None, 2, 4), ((8, 48), None, 4, 8)])
def test_sparsegpt_matches_numpy_sweep(rng, shape, s, k, n):
    W = rng.normal(size=shape).astype(np.float32)
    X = calib(rng, 96, shape[1])
    H = X.T.astype(np.float64) @ X
    res = sparsegpt_matrix(jnp.asarray(W), jnp.asarray(H, jnp.float32), k=k, n=n,
                           sparsity=s or 0.0, block=16)  # several blocks
    Wo, Mo = np_sparsegpt(W, H, s=s, k=k, n=n, B=16)
    np.testing.assert_array_equal(np.asarray(res.mask), Mo)
    scale = np.abs(Wo).max()
    np.testing.assert_allclose(np.asarray(res.weights), Wo, atol=2e-4 * scale, rtol=2e-3)
    assert float(res.damping) == pytest.approx(0.01 * np.mean(np.diag(H)), rel=1e-5)
    if n is None:
        assert (~Mo).sum() == math.ceil(s * W.size - 0.5)


def test_sparsegpt_update_lowers_output_error_below_its_mask_alone(rng):
    W = rng.normal(size=(32, 32)).astype(np.float32)
    X = calib(rng, 128, 32)
    res = sparsegpt_matrix(jnp.asarray(W), jnp.asarray(X.T @ X), k=2, n=4)
    M, Wu = np.asarray(res.mask), np.asarray(res.weights)
    err = lambda V: np.linalg.norm(X @ (V - W).T)  # noqa: E731
    assert err(Wu) < 0.9 * err(np.where(M, W, 0))  # the weight update is what SparseGPT adds


def test_sparsegpt_rank_deficient_and_dead_inputs_stay_finite(rng):
    W = rng.normal(size=(16, 32)).astype(np.float32)
    X = calib(rng, 8, 32)  # 8 rows: H has rank <= 8 of 32
    X[:, 5] = 0.0  # a dead input
    X[:, 7] = X[:, 6]  # collinear inputs
    H = X.T.astype(np.float64) @ X
    for k, n, s in [(2, 4, None), (None, None, 0.5)]:
        res = sparsegpt_matrix(jnp.asarray(W), jnp.asarray(H, jnp.float32), k=k, n=n,
                               sparsity=s or 0.0, block=8)
        assert np.all(np.isfinite(np.asarray(res.weights)))
        assert not np.asarray(res.weights)[:, 5].any()  # W_:j = 0 for a dead input
        Wo, Mo = np_sparsegpt(W, H, s=s, k=k, n=n, B=8)
        np.testing.assert_array_equal(np.asarray(res.mask), Mo)
        np.testing.assert_allclose(np.asarray(res.weights), Wo, atol=1e-3 * np.abs(Wo).max())


def test_damping_escalates_when_the_factorisation_fails():
    H = np.diag([1.0, 1.0, 1.0, -0.5]).astype(np.float32)  # indefinite (round-off gone wild)
    U, lam, _ = damped_inverse_factor(jnp.asarray(H))
    base = 0.01 * np.mean(np.diag(H))
    assert np.all(np.isfinite(np.asarray(U))) and float(lam) > 0.5 > base
    U, lam, _ = damped_inverse_factor(jnp.eye(4))  # a healthy H keeps the base damping
    assert float(lam) == pytest.approx(0.01)


def test_bad_calibration_is_refused_naming_the_layer(rng):
    params, W, X = one_layer(rng, (8, 16))
    for bad in (np.nan, np.inf):
        Xb = X.copy()
        Xb[3, 2] = bad
        for method in ("wanda", "sparsegpt"):
            with pytest.raises(ValueError, match="lin/weight: calibration inputs contain NaN"):
                registry.prune(params, method, sparsity=0.5, calib_inputs={"lin/weight": Xb})
    with pytest.raises(ValueError, match="needs calib_inputs"):
        registry.prune(params, "ria", sparsity=0.5)
    with pytest.raises(ValueError, match="lin/weight: calibration inputs have 12 features"):
        registry.prune(params, "ria", sparsity=0.5, calib_inputs={"lin/weight": X[:, :12]})
    with pytest.raises(ValueError, match="lin/weight: Hessian of shape"):
        registry.prune(params, "sparsegpt", sparsity=0.5,
                       calib_hessians={"lin/weight": np.eye(8, dtype=np.float32)})
    with pytest.raises(ValueError, match="needs hessians"):
        registry.pruner("sparsegpt", "2:4")


def test_indivisible_layers_are_skipped_and_uncalibrated_left_dense(rng):
    params = {"a": {"weight": jnp.asarray(rng.normal(size=(8, 10)), jnp.float32)},
              "b": {"weight": jnp.asarray(rng.normal(size=(8, 16)), jnp.float32)},
              "c": {"weight": jnp.asarray(rng.normal(size=(8, 16)), jnp.float32)}}
    X = {"a/weight": calib(rng, 32, 10), "b/weight": calib(rng, 32, 16)}
    for method in ("wanda", "ria", "sparsegpt"):
        with pytest.raises(ValueError, match="a/weight: d_in=10 is not divisible by n=4"):
            registry.prune(params, method, "2:4", calib_inputs=X)
        with pytest.warns(UserWarning):
            out, m, rep = registry.prune(params, method, "2:4", calib_inputs=X,
                                         on_indivisible="skip")
        assert rep["skipped"] == {"a/weight": "d_in=10 is not divisible by n=4",
                                  "c/weight": "no calibration inputs"}
        assert m["a"]["weight"] is None and m["c"]["weight"] is None
        nm.validate_nm(m, 2, 4)
        np.testing.assert_array_equal(np.asarray(out["c"]["weight"]), params["c"]["weight"])


def test_calib_hessians_give_the_same_result_as_inputs(rng):
    params, W, X = one_layer(rng, (16, 32))
    H = {"lin/weight": X.T @ X}
    for method in ("wanda", "ria", "sparsegpt"):
        a, ma, _ = registry.prune(params, method, "2:4", calib_inputs={"lin/weight": X})
        b, mb, _ = registry.prune(params, method, "2:4", calib_hessians=H)
        np.testing.assert_array_equal(np.asarray(ma["lin"]["weight"]),
                                      np.asarray(mb["lin"]["weight"]))
        np.testing.assert_allclose(np.asarray(a["lin"]["weight"]),
                                   np.asarray(b["lin"]["weight"]), atol=1e-4)


def test_budgets_are_met_per_row_and_per_layer(rng):
    params = {f"l{i}": {"weight": jnp.asarray(rng.normal(size=(8, 32)), jnp.float32)}
              for i in range(2)}
    X = {f"l{i}/weight": calib(rng, 48, 32) for i in range(2)}
    budget = {"l0": {"weight": 0.25}, "l1": {"weight": 0.75}}
    views = tree.select(params)
    for method in ("wanda", "sparsegpt"):
        _, m, _ = registry.prune(params, method, sparsity=0.5, budget=budget, calib_inputs=X)
        for p, s in (("l0/weight", 0.25), ("l1/weight", 0.75)):
            mk = np.asarray(tree.to_matrix(tree.flatten(m)[p], views[p]))
            assert (~mk).sum() == s * mk.size
        if method == "wanda":
            assert np.all((~np.asarray(m["l1"]["weight"])).sum(1) == 24)
    assert posttrain.row_count(0.29, 100) == 29  # float slack: 0.29 * 100 = 28.999...
