"""Tests of the per-layer records: SVDs, MP fits, inverse BBP, overlaps, and the layer views."""

import numpy as np
import pytest

from mpjax import mp
from mpjax.dynamics import layer_paths, load_params, load_run, record


def test_recorded_spectra_equal_direct_computation(tiny, base):
    run = load_run(base)
    params = load_params(base, tiny)
    assert list(run.epochs) == [0, 1, 2, 3]
    for i, path in enumerate(layer_paths(tiny)):
        K = np.asarray(params[f"Dense_{i}"]["kernel"], np.float64)
        for m in range(len(tiny.members)):
            W = K[m].T
            u, s, vt = np.linalg.svd(W, full_matrices=False)
            got = run.layers[path]["s"][-1, m]
            np.testing.assert_allclose(got, s, atol=1e-6 * s[0], rtol=1e-5)
            fit = mp.fit(s, W.shape)
            assert run.layers[path]["sigma_plus"][-1, m] == pytest.approx(fit.edge, rel=1e-5)
            k = tiny.top_k
            # top singular vectors agree up to sign (distinct values in practice)
            cos_u = np.abs(np.sum(run.layers[path]["U_top"][-1, m] * u[:, :k], axis=0))
            cos_v = np.abs(np.sum(run.layers[path]["V_top"][-1, m] * vt[:k].T, axis=0))
            np.testing.assert_allclose(cos_u, 1.0, atol=1e-3)
            np.testing.assert_allclose(cos_v, 1.0, atol=1e-3)
            edge = fit.edge
            energy = np.sum(s[s <= edge] ** 2)
            assert run.layers[path]["bulk_energy"][-1, m] == pytest.approx(energy, rel=1e-5)


def test_inverse_bbp_recovers_planted_spikes(rng):
    n, theta = 300, np.array([3.0, 2.0])
    u, _ = np.linalg.qr(rng.normal(size=(n, 2)))
    v, _ = np.linalg.qr(rng.normal(size=(n, 2)))
    g = 0.5
    W = u @ np.diag(theta) @ v.T + rng.normal(size=(n, n)) * np.sqrt(g / n)
    s = np.linalg.svd(W, compute_uv=False)
    assert s[0] > theta[0] * 1.03  # the noise pushes the outlier out
    est = record.inverse_bbp(s[:2], g / n, (n, n))
    np.testing.assert_allclose(est, theta, rtol=0.05)
    assert np.all(np.abs(est - theta) < 0.5 * np.abs(s[:2] - theta))  # far closer than raw s
    np.testing.assert_allclose(record.inverse_bbp_paper(s[:2], g), est, rtol=1e-10)
    assert np.isnan(record.inverse_bbp(np.array([0.5]), g / n, (n, n)))[0]
    # rectangular: 200 x 800
    u2, _ = np.linalg.qr(rng.normal(size=(200, 1)))
    v2, _ = np.linalg.qr(rng.normal(size=(800, 1)))
    W2 = 3.0 * u2 @ v2.T + rng.normal(size=(200, 800)) * np.sqrt(1 / 800)
    s2 = np.linalg.svd(W2, compute_uv=False)
    assert record.inverse_bbp(s2[:1], 1 / 800, (200, 800))[0] == pytest.approx(3.0, rel=0.03)


@pytest.mark.parametrize("shape", [(60, 150), (150, 60)])
def test_entry_variance_matches_iid_noise(rng, shape):
    v = 0.3
    W = rng.normal(size=shape) * np.sqrt(v)
    dec = record.decompose(W)
    np.testing.assert_allclose(dec.s, np.linalg.svd(W, compute_uv=False), rtol=1e-8)
    r = record.layer_record(dec, top_k=3)
    assert r["v_star"] == pytest.approx(v, rel=0.1)
    assert r["gN"] == pytest.approx(r["v_star"] * shape[0] * shape[1])
    assert r["g_star"] == pytest.approx(r["v_star"] * shape[1])
    U, V = dec.top(3)
    np.testing.assert_allclose(U.T @ W @ V, np.diag(dec.s[:3]), atol=1e-8)
    # overlap ||A^T B||_F^2 / k: basis-invariant, 0 for orthogonal subspaces, j/k for j shared
    U6, _ = dec.top(6)
    q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    assert record.subspace_overlap(U, U @ q) == pytest.approx(1.0)
    assert record.subspace_overlap(U, U6[:, 3:]) == pytest.approx(0.0, abs=1e-12)
    assert record.subspace_overlap(U, U6[:, [0, 3, 4]] @ q) == pytest.approx(1 / 3)


def test_jax_backend_matches_numpy_backend(rng):
    W = (rng.normal(size=(48, 30)) / np.sqrt(30)).astype(np.float32)
    a, b = record.decompose(W, "numpy"), record.decompose(W, "jax")
    np.testing.assert_allclose(b.s, a.s, rtol=1e-4, atol=1e-5)
    ra, rb = record.layer_record(a, 4), record.layer_record(b, 4)
    assert rb["sigma_plus"] == pytest.approx(ra["sigma_plus"], rel=1e-4)
    np.testing.assert_allclose(np.abs(np.sum(ra["U_top"] * rb["U_top"], 0)), 1.0, atol=1e-3)
    with pytest.raises(ValueError, match="backend='torch'"):
        record.decompose(W, "torch")
