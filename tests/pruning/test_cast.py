"""CAST: the projection against a brute-force oracle, its cost against magnitude N:M."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from mpjax.pruning import cast, nm, prune


def test_cast_matches_bruteforce(rng):
    W = rng.normal(size=(6, 16)).astype(np.float32)
    X = (rng.normal(size=(200, 16)) @ rng.normal(size=(16, 16))).astype(np.float32)
    M = rng.random((6, 16)) > 0.5
    for k, n in [(2, 4), (3, 8)]:
        C = np.asarray(cast.block_covariances(X, n))
        pats = cast.candidate_patterns(k, n)
        assert len(pats) == len(list(itertools.combinations(range(n), k)))
        res = cast.cast_matrix(jnp.asarray(W), jnp.asarray(C), jnp.asarray(pats), k=k, n=n,
                               M_ser=jnp.asarray(M), alpha_ser=0.3, chunk=5)
        u, Mg = W.reshape(6, -1, n), M.reshape(6, -1, n)
        cbar = np.mean(u * u * np.diagonal(C, axis1=1, axis2=2)[None])
        got = np.asarray(res.mask).reshape(6, -1, n)
        for i, g in itertools.product(range(6), range(16 // n)):
            costs = [((1 - p) * u[i, g]) @ C[g] @ ((1 - p) * u[i, g])
                     + 0.3 * cbar * np.sum(p != Mg[i, g]) for p in pats]
            assert np.isclose(costs[int(np.argmin(costs))],
                              costs[[tuple(p) for p in pats.tolist()].index(tuple(got[i, g]))],
                              rtol=1e-5)


@pytest.mark.parametrize(("k", "n", "exhaustive"), [(2, 4, None), (4, 8, None), (8, 16, False)])
def test_cast_cost_not_above_magnitude(rng, k, n, exhaustive):
    params = {f"Dense_{i}": {"kernel": jnp.asarray(rng.normal(size=(32, 24)), jnp.float32)}
              for i in range(2)}
    calib = {f"Dense_{i}/kernel": (rng.normal(size=(256, 32)) * np.linspace(0.1, 3, 32))
             @ rng.normal(size=(32, 32)) for i in range(2)}
    out, m, rep = prune(params, "cast", f"{k}:{n}", calib_inputs=calib, alpha_ser=0.0,
                              exhaustive=exhaustive, max_patterns=64)
    nm.validate_nm(m, k, n)

    def cost(r, X):  # numpy oracle: mean_t sum_{i,g} (r_ig . x_tg)^2, float64
        X = np.asarray(X, np.float64).reshape(len(X), -1, n)
        return sum(np.sum((X[:, g] @ r.reshape(len(r), -1, n)[:, g].T) ** 2)
                   for g in range(X.shape[1])) / len(X)

    assert set(rep["cast_cost"]) == set(calib)
    totals = np.zeros(2)
    for p, X in calib.items():
        name = p.split("/")[0]
        W = np.asarray(params[name]["kernel"], np.float64).T  # view (d_out, d_in)
        kept = np.asarray(out[name]["kernel"], np.float64).T
        # magnitude k:n: keep the k largest |W| of every group of n consecutive inputs
        g = np.abs(W).reshape(len(W), -1, n)
        keep = np.zeros(g.shape, bool)
        np.put_along_axis(keep, np.argsort(-g, axis=-1, kind="stable")[..., :k], True, axis=-1)
        ours = np.array([cost(W - kept, X), cost(np.where(keep.reshape(W.shape), 0.0, W), X)])
        np.testing.assert_allclose([rep["cast_cost"][p]["cast"], rep["cast_cost"][p]["magnitude"]],
                                   ours, rtol=1e-4)
        assert ours[0] > 0 and ours[0] <= ours[1] * (1 + 1e-5), p
        totals += ours
    assert totals[0] < totals[1]


def test_candidate_patterns_sampling():
    assert len(cast.candidate_patterns(8, 16)) == 1024
    full = cast.candidate_patterns(8, 16, exhaustive=True)
    assert full.shape == (12870, 16) and np.all(full.sum(1) == 8)
    assert len({r.tobytes() for r in full}) == 12870
    assert len(cast.candidate_patterns(6, 12)) == 924
