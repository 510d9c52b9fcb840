"""Tests of the experiments: noise injection, the scaling metrics and the scaling sweep."""

import dataclasses
import os

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
from mpjax.dynamics.experiments import DELTA


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
    assert os.path.exists(tmp_path / "sc" / "N16" / "index.jsonl")
    assert os.path.getsize(tmp_path / "sc" / "plots" / "scaling.png") > 1000
