"""Tests of the experiments: noise injection, the scaling metrics and the scaling sweep."""

import dataclasses
import os

import jax
import numpy as np
import pytest

from mpjax.dynamics import (
    Arm,
    load_params,
    load_study_data,
    noise_injection,
    run_experiment,
    scaling_metrics,
)
from mpjax.dynamics.data import StudyData
from mpjax.dynamics.experiments import DELTA, max_norm_input, perturb, tau_diag_terms


def test_noise_injection_raises_regularised_loss(tiny, base):
    cfg = dataclasses.replace(
        tiny, experiment="noise", noise_levels=(0.0, 1.0, 4.0, 16.0), noise_draws=2
    )
    rows = noise_injection(cfg, load_params(base, tiny), load_study_data(tiny))
    J = [r["J"] for r in rows]
    assert all(a < b for a, b in zip(J[:-1], J[1:], strict=True))
    assert rows[0]["eps"] == 0.0 and rows[1]["eps"] == pytest.approx(1.0 / 40)


def test_scaling_metrics_formula(tiny, base):
    params = load_params(base, tiny)
    x = load_study_data(tiny).x_test[:16]
    v = np.array([0.01, 0.02, 0.03])
    got = scaling_metrics(tiny, params, x, v)
    N, a = 40, []
    for m in range(len(tiny.members)):
        W1 = np.asarray(params["Dense_0"]["kernel"][m]).T  # view (N, d_0)
        W3 = np.asarray(params["Dense_2"]["kernel"][m]).T  # view (d_L, N)
        a.append(
            np.abs(W3).sum(1).max() * np.linalg.norm(x @ W1.T, axis=1) * np.sqrt(np.log(2 * N) / N)
        )
    assert got["N"] == N
    assert got["a_N_mean"] == pytest.approx(np.mean(a), rel=1e-5)
    assert got["tau_N"] == pytest.approx(np.mean(np.sqrt(2 * v * np.log(2 * N * N / DELTA))))


def test_scaling_experiment_runs_each_width(tmp_path, tiny):
    cfg = dataclasses.replace(
        tiny,
        experiment="scaling",
        epochs=1,
        scaling_widths=(8, 16),
        widths=(12, 8, 8, 3),
        arms=(Arm("L2", l2=1e-3),),
    )
    res = run_experiment(cfg, str(tmp_path / "sc"), plots=True)
    assert [r["N"] for r in res["rows"]] == [8, 16]
    assert all(r["a_N_mean"] > 0 and r["tau_N"] > 0 for r in res["rows"])
    for r in res["rows"]:  # init values beside trained ones, per seed
        assert len(r["tau_diag_seeds"]) == len(r["tau_diag_init_seeds"]) == len(cfg.seeds)
        assert r["tau_diag_init"] > 0 and r["tau_diag"] != r["tau_diag_init"]
        assert r["tau_diag"] == pytest.approx(2**0.5 * r["a_th"] + r["a_emp"])
    assert os.path.exists(tmp_path / "sc" / "N16" / "index.jsonl")
    assert os.path.getsize(tmp_path / "sc" / "plots" / "scaling.png") > 1000


@pytest.mark.parametrize("d0, N, dL", [(50, 20, 4), (20, 50, 4), (30, 30, 30)])
def test_tau_diag_terms_match_a_loop_oracle(rng, d0, N, dL):
    M = 2
    params = {
        "Dense_0": {"kernel": rng.normal(size=(M, d0, N))},
        "Dense_2": {"kernel": rng.normal(size=(M, N, dL))},
    }
    s = rng.normal(size=d0)
    got = tau_diag_terms(params, s, N)
    for m in range(M):
        W1 = params["Dense_0"]["kernel"][m].T  # torch layout (N, d0)
        W3 = params["Dense_2"]["kernel"][m].T  # (dL, N)
        inf = max(sum(abs(W3[i, j]) for j in range(N)) for i in range(dL))
        h = [sum(W1[i, j] * s[j] for j in range(d0)) for i in range(N)]
        norm = sum(v * v for v in h) ** 0.5
        a_th = inf * norm * (np.log(2 * N) / N) ** 0.5
        a_emp = inf * norm / N**0.375
        assert got["a_th"][m] == pytest.approx(a_th, rel=1e-10)
        assert got["a_emp"][m] == pytest.approx(a_emp, rel=1e-10)
        assert got["tau_diag"][m] == pytest.approx(2**0.5 * a_th + a_emp, rel=1e-10)
    # the quantities scale linearly in the input and in W3, not in W1's sign
    twice = tau_diag_terms(params, 2 * s, N)
    np.testing.assert_allclose(twice["tau_diag"], 2 * got["tau_diag"])


def test_max_norm_input_is_the_largest(rng):
    xtr, xte = rng.normal(size=(30, 5)), rng.normal(size=(10, 5))
    xte[7] *= 50
    data = StudyData(xtr, np.zeros(30, np.int32), xte, np.zeros(10, np.int32))
    np.testing.assert_array_equal(max_norm_input(data), xte[7])


@pytest.mark.parametrize("layers, touched", [("non_final", [0, 1]), ("middle", [1])])
def test_noise_touches_the_chosen_layers_with_std_eps(tiny, base, layers, touched):
    cfg = dataclasses.replace(tiny, noise_layers=layers, noise_eps="std")
    params = load_params(base, tiny)
    noisy = perturb(cfg, params, 0.02, jax.random.key(1))
    for i in range(tiny.n_layers):
        diff = np.asarray(noisy[f"Dense_{i}"]["kernel"]) - np.asarray(
            params[f"Dense_{i}"]["kernel"]
        )
        if i in touched:
            assert np.std(diff) == pytest.approx(0.02, rel=0.1)  # eps is the std
        else:
            assert np.all(diff == 0)  # the final layer is never perturbed
        np.testing.assert_array_equal(noisy[f"Dense_{i}"]["bias"], params[f"Dense_{i}"]["bias"])


def test_noise_sweep_on_one_arm_reports_train_and_test(tiny, base):
    cfg = dataclasses.replace(
        tiny,
        experiment="noise",
        noise_layers="non_final",
        noise_eps="std",
        noise_arm="L2",
        noise_levels=(0.0, 0.05, 0.2),
        noise_draws=2,
    )
    rows = noise_injection(cfg, load_params(base, tiny), load_study_data(tiny))
    assert [r["eps"] for r in rows] == [0.0, 0.05, 0.2] and rows[0]["eps_is"] == "std"
    for key in ("train_ce", "train_acc", "test_ce", "test_acc", "J", "J_l2"):
        assert len(rows[0][key + "_seeds"]) == 1  # the L2 arm has one seed here
    assert rows[0]["J"] == pytest.approx(rows[0]["J_l2"])  # the L2 arm has no l1
    J = [r["J_l2"] for r in rows]
    assert J[0] < J[1] < J[2]
    assert rows[2]["train_acc"] < rows[0]["train_acc"]
