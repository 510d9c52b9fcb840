"""Tests for mpjax.mp.spectra: known spectra, both engines, tree batching, dtypes, jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import tree
from mpjax.mp import spectra


def known_matrix(rng, shape, dtype):
    """``U diag(s) V^T`` with a planted descending spectrum spread over two decades."""
    p = min(shape)
    u, _ = np.linalg.qr(rng.standard_normal((shape[0], p)))
    v, _ = np.linalg.qr(rng.standard_normal((shape[1], p)))
    s = np.sort(np.geomspace(0.1, 10.0, p) * rng.uniform(0.9, 1.1, p))[::-1]
    return (u * s) @ v.T, s


@pytest.mark.parametrize("engine", ["host", "jax"])
@pytest.mark.parametrize("method", ["gram", "svd"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(24, 40), (40, 24), (32, 32)])  # wide, tall, square
def test_known_spectrum_recovered(rng, engine, method, dtype, shape):
    w, s = known_matrix(rng, shape, dtype)
    w = w.astype(dtype)
    ref = np.linalg.svd(w.astype(np.float64), compute_uv=False)  # exact spectrum of the rounded w
    got = spectra.matrix_singular_values(w, method=method, dtype=dtype, engine=engine)
    eps = np.finfo(dtype).eps
    assert got.dtype == dtype and got.shape == (min(shape),)
    assert np.all(np.diff(got) <= 0), "not descending"
    if method == "svd":  # backward stable: absolute error ~ eps * s_1
        np.testing.assert_allclose(got, ref, rtol=0, atol=50 * eps * ref[0])
    else:  # Gram squares: error on s^2 ~ eps * s_1^2
        np.testing.assert_allclose(
            got.astype(np.float64) ** 2, ref**2, rtol=0, atol=50 * eps * ref[0] ** 2
        )
    # and the planted values themselves, to the precision the input carries
    np.testing.assert_allclose(ref, s, rtol=0, atol=20 * eps * s[0])


def params_tree(rng):
    return {
        "Dense_0": {
            "kernel": rng.standard_normal((20, 12)).astype(np.float32),
            "bias": np.zeros(12, np.float32),
        },
        "attn": {
            "query": {"kernel": rng.standard_normal((12, 2, 4)).astype(np.float32)},
            "out": {"kernel": rng.standard_normal((2, 4, 12)).astype(np.float32)},
        },
        "Conv_0": {"kernel": rng.standard_normal((3, 3, 2, 8)).astype(np.float32)},
        "Dense_1": {"kernel": rng.standard_normal((12, 20)).astype(np.float32)},
    }


@pytest.mark.parametrize("engine", ["host", "jax"])
@pytest.mark.parametrize("method", ["gram", "svd"])
def test_tree_matches_numpy_per_view(rng, method, engine):
    params = params_tree(rng)
    views = tree.select(params)
    out = spectra.singular_values(params, views, method=method, engine=engine)
    assert list(out) == list(views)  # tree order kept, bias skipped
    for path, w in tree.matrices(params, views).items():
        ref = np.linalg.svd(np.asarray(w, np.float64), compute_uv=False)
        assert out[path].shape == (min(views[path].shape),)
        np.testing.assert_allclose(out[path], ref, rtol=1e-4, atol=1e-4 * ref[0])


def test_float64_and_half_inputs(rng):
    w = rng.standard_normal((16, 24))
    s64 = spectra.matrix_singular_values(w)  # float64 input stays float64
    assert s64.dtype == np.float64
    np.testing.assert_allclose(s64, np.linalg.svd(w, compute_uv=False), rtol=1e-12)
    s16 = spectra.matrix_singular_values(jnp.asarray(w, jnp.bfloat16))
    assert s16.dtype == np.float32
    np.testing.assert_allclose(s16, s64, rtol=2e-2, atol=2e-2 * s64[0])
    assert jnp.zeros(2).dtype == jnp.float32  # enable_x64 did not leak


@pytest.mark.parametrize("method", ["gram", "svd"])
def test_jit_equals_eager(rng, method):
    stack = jnp.asarray(rng.standard_normal((3, 10, 16)), jnp.float32)
    fn = spectra.batched_function(method)
    jitted = np.asarray(fn(stack))
    one = spectra._gram_one if method == "gram" else spectra._svd_one
    eager = np.stack([np.asarray(one(a)) for a in stack])  # op-by-op dispatch, no outer jit
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-5 * jitted.max())


def test_no_recompile_on_second_call(rng):
    spectra.singular_values(params_tree(rng), engine="jax")
    before = spectra.compile_count("gram")
    assert before >= 2
    out = spectra.singular_values(params_tree(np.random.default_rng(1)), engine="jax")
    assert spectra.compile_count("gram") == before  # same shapes, new data
    new_shape = {"x": {"kernel": np.ones((5, 13), np.float32)}}
    spectra.singular_values(new_shape)  # the host engine (numpy leaves) compiles nothing
    assert spectra.compile_count("gram") == before
    spectra.singular_values(new_shape, engine="jax")
    assert spectra.compile_count("gram") == before + 2  # counter can see a compile
    assert all(np.all(np.isfinite(s)) for s in out.values())


def test_same_shape_layers_batched_once(rng, monkeypatch):
    calls = []
    real = spectra._run_batch
    monkeypatch.setattr(
        spectra, "_run_batch", lambda stack, *a: calls.append(len(stack)) or real(stack, *a)
    )
    params = {
        f"b{i}": {"kernel": rng.standard_normal((8, 12)).astype(np.float32)} for i in range(5)
    }
    # same (p, n) but the other memory order: its own batch, contracted as a^T a, no copy
    params["t"] = {"kernel": rng.standard_normal((12, 8)).astype(np.float32)}
    out = spectra.singular_values(params, engine="jax")
    assert sorted(calls) == [1, 5]
    for path, w in tree.matrices(params).items():
        ref = np.linalg.svd(w.astype(np.float64), compute_uv=False)
        np.testing.assert_allclose(out[path], ref, rtol=1e-4, atol=1e-4 * ref[0])


def test_bad_inputs():
    with pytest.raises(ValueError, match="method"):
        spectra.matrix_singular_values(np.eye(3), method="qr")
    with pytest.raises(ValueError, match="2-D"):
        spectra.matrix_singular_values(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="dtype"):
        spectra.matrix_singular_values(np.eye(3), dtype=np.int32)
    with pytest.raises(ValueError, match="engine"):
        spectra.singular_values({"k": {"kernel": np.eye(3)}}, engine="gpu")


def test_auto_engine_sends_numpy_and_cpu_arrays_to_the_host(rng, monkeypatch):
    seen = []
    real = spectra._host_one
    monkeypatch.setattr(spectra, "_host_one", lambda w, *a: seen.append(type(w)) or real(w, *a))
    w = rng.standard_normal((6, 9)).astype(np.float32)
    params = {"a": {"kernel": w}, "b": {"kernel": jnp.asarray(w.T)}}
    assert jax.devices()[0].platform == "cpu"  # tests run on the CPU (conftest)
    out = spectra.singular_values(params)
    assert len(seen) == 2
    np.testing.assert_allclose(out["a/kernel"], out["b/kernel"], rtol=1e-6)
    seen.clear()
    spectra.singular_values(params, engine="jax")
    assert seen == []


def test_host_engine_keeps_tree_order_across_many_shapes(rng):
    shapes = [(3 + i, 40 - 3 * i) for i in range(10)] + [(30, 7), (7, 30), (0, 4)]
    params = {f"l{i}": {"kernel": rng.standard_normal(s)} for i, s in enumerate(shapes)}
    out = spectra.singular_values(params, engine="host")  # tasks finish out of order
    assert list(out) == list(tree.select(params))
    for path, w in tree.matrices(params).items():
        ref = np.linalg.svd(w, compute_uv=False)
        assert out[path].dtype == np.float64 and out[path].shape == ref.shape
        np.testing.assert_allclose(out[path], ref, rtol=1e-10, atol=1e-10 * ref.max(initial=1))


def test_host_gram_overflow_gives_nan_not_an_error():
    w = np.full((4, 6), 3e19, np.float32)  # s^2 ~ 1e40 overflows float32
    assert np.all(np.isnan(spectra.matrix_singular_values(w, engine="host")))
    s = spectra.matrix_singular_values(w, dtype=np.float64, engine="host")  # float64 is fine
    np.testing.assert_allclose(s[0], 3e19 * np.sqrt(24), rtol=1e-6)


@pytest.mark.parametrize("shape", [(40, 40), (60, 25), (25, 60), (1, 7)])
def test_thin_svd_matches_lapack(rng, shape):
    w = rng.standard_normal(shape)
    s, u, vt = spectra.thin_svd(w)
    ref = np.linalg.svd(w, compute_uv=False)
    p = min(shape)
    assert s.shape == (p,) and u.shape == (shape[0], p) and vt.shape == (p, shape[1])
    np.testing.assert_allclose(s, ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(u @ np.diag(s) @ vt, w, atol=1e-9)
    np.testing.assert_allclose(u.T @ u, np.eye(p), atol=1e-8)
    np.testing.assert_allclose(vt @ vt.T, np.eye(p), atol=1e-8)


def test_thin_svd_rank_deficient_has_zero_vectors_for_zero_values(rng):
    w = np.outer(rng.standard_normal(6), rng.standard_normal(9))  # rank 1
    s, u, vt = spectra.thin_svd(w)
    assert s[0] > 1 and np.all(s[1:] < 1e-6)
    np.testing.assert_allclose((u[:, :1] * s[:1]) @ vt[:1], w, atol=1e-10)
    assert np.all(np.isfinite(u)) and np.all(np.isfinite(vt))


def test_thin_svd_rejects_non_matrices():
    with pytest.raises(ValueError, match="2-D"):
        spectra.thin_svd(np.ones((2, 3, 4)))


@pytest.mark.parametrize("shape", [(128, 300), (300, 128), (160, 160)])
def test_host_digits_do_not_depend_on_the_company(rng, shape):
    """One BLAS thread per matrix: a matrix alone and in a tree gives the same bits."""
    w = rng.standard_normal(shape).astype(np.float32)
    alone = spectra.matrix_singular_values(w.T, engine="host")  # the (d_out, d_in) view
    others = {f"o{i}": {"kernel": rng.standard_normal((64, 96)).astype(np.float32)}
              for i in range(3)}  # fmt: skip
    together = spectra.singular_values({"w": {"kernel": w}, **others}, engine="host")
    np.testing.assert_array_equal(together["w/kernel"], alone)
    ref = np.linalg.svd(w.astype(np.float64), compute_uv=False)  # and right, of course
    np.testing.assert_allclose(
        alone.astype(np.float64) ** 2, ref**2, atol=50 * 1.2e-7 * ref[0] ** 2
    )


@pytest.mark.parametrize("method", ["gram", "svd"])
def test_host_engine_leaves_the_weights_untouched(rng, method):
    params = {
        "wide": {"kernel": rng.standard_normal((20, 50)).astype(np.float32)},
        "tall": {"kernel": rng.standard_normal((50, 20)).astype(np.float64)},
    }
    before = {k: v["kernel"].copy() for k, v in params.items()}
    spectra.singular_values(params, method=method, engine="host")
    assert all(np.array_equal(params[k]["kernel"], before[k]) for k in params)
