"""Tests of Algorithm 1: keep spikes + a bulk fraction, sparsify the vectors, split, hold rank."""

import dataclasses

import numpy as np
import pytest

from mpjax import mp
from mpjax.dynamics import algorithm1, load_params, load_run, record


def planted(rng, shape, spikes=(10.0, 8.0, 6.0)):
    """Spikes on unit vectors plus N(0, 1/d_in) noise, a ``shape`` matrix."""
    d_out, d_in = shape
    u, _ = np.linalg.qr(rng.normal(size=(d_out, len(spikes))))
    v, _ = np.linalg.qr(rng.normal(size=(d_in, len(spikes))))
    return u @ np.diag(spikes) @ v.T + rng.normal(size=shape) / np.sqrt(d_in)


def test_mp_prune_matrix_keeps_spikes_plus_bulk_fraction(rng):
    n = 100
    dec = record.decompose(planted(rng, (n, n)))
    W_new, r = algorithm1.mp_prune_matrix(dec, epoch=150, horizon=200.0, fit_error_max=1.0)
    assert r == 3 + int(np.floor(0.25 * 97 + 1e-6))
    np.testing.assert_allclose(np.linalg.svd(W_new, compute_uv=False)[:r], dec.s[:r], rtol=1e-4)
    assert np.linalg.matrix_rank(W_new, tol=1e-4) == r
    assert algorithm1.mp_prune_matrix(dec, 150, 200.0, fit_error_max=1e-9) == (None, n)
    assert algorithm1.keep_fraction(300, 200.0) == 0.0


@pytest.mark.parametrize("shape", [(60, 150), (150, 60), (100, 100)])
@pytest.mark.parametrize("epoch", [4, 100, 190])
def test_step_keeps_the_bulk_fraction_and_splits_only_when_it_saves(rng, shape, epoch):
    dec = record.decompose(planted(rng, shape))
    step = algorithm1.algorithm1_step(dec, epoch, 200.0, fit_error_max=1.0, split=True)
    edge = mp.fit(np.linalg.svd(dec.U * dec.s @ dec.Vt, compute_uv=False), shape).edge
    spikes = int(np.sum(dec.s > edge))
    p = min(shape)
    f = max(0.0, 1 - epoch / 200)
    assert spikes == 3
    assert step.rank == spikes + int(np.floor(f * (p - spikes) + 1e-9))
    d_out, d_in = shape
    saves = step.rank * (d_out + d_in) < d_out * d_in
    assert step.split == saves  # split exactly when two factors are smaller
    assert (step.factors is not None) == saves
    # theta = 0: the kept part is the best rank-r approximation (function preserved on it)
    best = (dec.U[:, : step.rank] * dec.s[: step.rank]) @ dec.Vt[: step.rank]
    np.testing.assert_allclose(step.W, best, atol=1e-5)
    if saves:
        W1, W2 = step.factors
        assert W1.shape == (step.rank, d_in) and W2.shape == (d_out, step.rank)
        x = rng.normal(size=(d_in, 7))
        np.testing.assert_allclose(W2 @ (W1 @ x), best @ x, atol=1e-8)


def test_factors_carry_sqrt_s_each(rng):
    U, _ = np.linalg.qr(rng.normal(size=(9, 4)))
    V, _ = np.linalg.qr(rng.normal(size=(6, 4)))
    s = np.array([4.0, 3.0, 1.0, 0.25])
    W1, W2 = algorithm1.split_factors(U, s, V.T)
    np.testing.assert_allclose(W2 @ W1, U @ np.diag(s) @ V.T, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(W1, axis=1), np.sqrt(s))  # rows of diag(sqrt s)V^T
    np.testing.assert_allclose(np.linalg.norm(W2, axis=0), np.sqrt(s))


def test_sparsify_thresholds_match_a_loop_oracle(rng):
    U, s, Vt, edge, theta = (
        rng.normal(size=(30, 5)) * 0.2,
        np.array([5, 3, 1.5, 1, 0.2]),
        None,
        2.0,
        0.3,
    )
    Vt = rng.normal(size=(5, 20)) * 0.2
    U2, V2, zeroed = algorithm1.sparsify_vectors(U, s, Vt, edge, theta)
    count = 0
    for k in range(5):
        t = theta / 750 if s[k] >= edge else theta * max(1 / 750, (1 - s[k] / edge) ** 30)
        for i in range(30):
            small = abs(U[i, k]) < t
            count += small
            assert U2[i, k] == (0.0 if small else U[i, k])
        for j in range(20):
            small = abs(Vt[k, j]) < t
            count += small
            assert V2[k, j] == (0.0 if small else Vt[k, j])
    assert zeroed == count and zeroed > 0  # the deep-bulk vector (s = 0.2) loses entries
    assert np.count_nonzero(U2[:, 4] == 0) > np.count_nonzero(U2[:, 0] == 0)


def test_sparsify_perturbs_little_and_zero_theta_changes_nothing(rng):
    dec = record.decompose(planted(rng, (80, 120)))
    plain = algorithm1.algorithm1_step(dec, 40, 200.0, 1.0)
    sparse = algorithm1.algorithm1_step(dec, 40, 200.0, 1.0, theta=0.05)
    assert plain.zeroed == 0 and sparse.zeroed > 0 and sparse.rank == plain.rank
    diff = np.linalg.norm(sparse.W - plain.W) / np.linalg.norm(plain.W)
    assert 0 < diff < 0.2
    # spikes keep their values: only tiny entries (< theta/750) of spike vectors are zeroed
    np.testing.assert_allclose(np.linalg.svd(sparse.W, compute_uv=False)[:3], dec.s[:3], rtol=0.02)


def test_small_or_badly_fitted_layers_are_left_alone(rng):
    small = record.decompose(rng.normal(size=(10, 40)))
    assert algorithm1.algorithm1_step(small, 100, 200.0, 1.0).W is None
    dec = record.decompose(planted(rng, (60, 60)))
    step = algorithm1.algorithm1_step(dec, 100, 200.0, 1e-9, theta=0.1, split=True)
    assert step == algorithm1.PruneStep(None, 60, False, None, 0)


def test_split_layers_keep_their_rank_and_are_not_pruned_again(tiny, run_in):
    cfg = dataclasses.replace(
        tiny, prune_every=1, prune_horizon=1.5, split=True, sparsify_theta=0.01, epochs=3
    )
    out = run_in(cfg, "split")
    lay = load_run(out).layers["Dense_1/kernel"]  # 32 x 40: splits once r * 72 < 1280
    m = 2  # the MP+L2 member
    assert lay["split"][1, m] == 1 and lay["split"][-1, m] == 1
    assert lay["split"][-1, 0] == 0  # the unpruned member never splits
    r = int(lay["rank"][1, m])
    assert r * 72 < 32 * 40 and lay["rank"][-1, m] == r  # rank frozen after the split
    s_end = lay["s"][-1, m]
    assert np.all(s_end[r:] < 1e-4 * s_end[0])  # still rank r after two more epochs
    assert lay["params_effective"][-1, m] == r * 72
    kernel = np.asarray(load_params(out, cfg)["Dense_1"]["kernel"][m])
    assert np.linalg.matrix_rank(kernel, tol=1e-4 * s_end[0]) == r
