"""Tests of the L2-dynamics study: records, resume, vmap over seeds, validation, experiments."""

import dataclasses
import json
import os

import numpy as np
import pytest

from mpjax.dynamics import experiments as exp
from mpjax.dynamics import record as rec
from mpjax.dynamics import store
from mpjax.dynamics import trainer as dyn
from mpjax.dynamics.config import Arm, DynamicsConfig, from_dict, load_config, to_dict, validate
from mpjax.mp import fits as mp

TINY = DynamicsConfig(
    name="tiny",
    widths=(12, 40, 32, 3),
    dataset="teacher",
    n_train=256,
    n_test=128,
    teacher_rank=2,
    teacher_hidden=8,
    batch_size=64,
    epochs=3,
    lr=0.05,
    top_k=3,
    prune_every=1,
    prune_horizon=4.0,
    fit_error_max=1.0,
    arms=(Arm("none"), Arm("L2", l2=1e-2), Arm("MP+L2", l2=1e-2, mp=True)),
)


def _run(tmp_path, config=TINY, name="run", **kw):
    out = str(tmp_path / name)
    dyn.train(config, out, progress=False, **kw)
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The uninterrupted TINY run (3 epochs), shared by the comparisons below."""
    out = str(tmp_path_factory.mktemp("dyn") / "base")
    dyn.train(TINY, out, progress=False)
    return out


def _records(out):
    return exp.load_run(out)


def test_recorded_spectra_equal_direct_computation(base):
    run = _records(base)
    params = exp.load_params(base, TINY)
    assert list(run.epochs) == [0, 1, 2, 3]
    for i, path in enumerate(dyn.layer_paths(TINY)):
        K = np.asarray(params[f"Dense_{i}"]["kernel"], np.float64)
        for m in range(len(TINY.members)):
            W = K[m].T
            u, s, vt = np.linalg.svd(W, full_matrices=False)
            got = run.layers[path]["s"][-1, m]
            np.testing.assert_allclose(got, s, atol=1e-6 * s[0], rtol=1e-5)
            fit = mp.fit(s, W.shape)
            assert run.layers[path]["sigma_plus"][-1, m] == pytest.approx(fit.edge, rel=1e-5)
            k = TINY.top_k
            # top singular vectors agree up to sign (distinct values in practice)
            cos_u = np.abs(np.sum(run.layers[path]["U_top"][-1, m] * u[:, :k], axis=0))
            cos_v = np.abs(np.sum(run.layers[path]["V_top"][-1, m] * vt[:k].T, axis=0))
            np.testing.assert_allclose(cos_u, 1.0, atol=1e-3)
            np.testing.assert_allclose(cos_v, 1.0, atol=1e-3)
            edge = fit.edge
            energy = np.sum(s[s <= edge] ** 2)
            assert run.layers[path]["bulk_energy"][-1, m] == pytest.approx(energy, rel=1e-5)


def test_metrics_and_training_progress(base):
    run = _records(base)
    ce = run.metrics["train_ce"]
    assert np.isnan(ce[0]).all() and np.all(ce[-1] < ce[1])  # the loss falls
    assert np.all(run.metrics["test_acc"][-1] > 0.5)
    # L2 shrinks the bulk of the hidden layer relative to no regularisation
    edge = run.layers["Dense_1/kernel"]["sigma_plus"][-1]
    assert edge[1] < edge[0]


def test_mp_pruning_truncates_rank_and_reports_factored_params(base):
    run = _records(base)
    lay = run.layers["Dense_1/kernel"]  # 32 x 40, p = 32 >= MIN_PRUNE_P
    r = int(lay["rank"][-1, 2])
    assert r < 32 and lay["rank"][-1, 0] == 32  # only the MP member is truncated
    assert np.all(lay["s"][-1, 2, r:] < 1e-4 * lay["s"][-1, 2, 0])
    expect = r * (32 + 40) if r * 72 < 32 * 40 else 32 * 40
    assert lay["params_effective"][-1, 2] == expect
    assert run.layers["Dense_0/kernel"]["rank"][-1, 2] == 12  # p = 12 < 32: never pruned


def test_resume_extends_without_gaps_or_duplicates(tmp_path, base):
    short = dataclasses.replace(TINY, epochs=1)
    out = _run(tmp_path, short)
    dyn.train(TINY, out, resume=True, progress=False)  # extend to 3 epochs
    entries = store.read_index(out)
    assert [e["epoch"] for e in entries] == [0, 1, 2, 3]
    assert sorted(os.listdir(os.path.join(out, "epochs"))) == [
        f"epoch_{e:05d}.npz" for e in range(4)
    ]
    a, b = _records(out), _records(base)
    np.testing.assert_allclose(a.metrics["test_acc"], b.metrics["test_acc"])
    for path in a.layers:
        np.testing.assert_allclose(a.layers[path]["s"], b.layers[path]["s"], rtol=1e-5, atol=1e-6)
    # resuming a finished run adds nothing
    dyn.train(TINY, out, resume=True, progress=False)
    assert [e["epoch"] for e in store.read_index(out)] == [0, 1, 2, 3]


def test_interrupted_run_loses_at_most_the_epoch_in_progress(tmp_path, base, monkeypatch):
    real_save = store.save_checkpoint

    def crash_at_2(run_dir, epoch, state):
        if epoch == 2:  # records of epoch 2 are on disk, its checkpoint is not
            raise KeyboardInterrupt
        real_save(run_dir, epoch, state)

    monkeypatch.setattr(store, "save_checkpoint", crash_at_2)
    out = str(tmp_path / "crash")
    with pytest.raises(KeyboardInterrupt):
        dyn.train(TINY, out, progress=False)
    assert [e["epoch"] for e in store.read_index(out)] == [0, 1]
    monkeypatch.setattr(store, "save_checkpoint", real_save)
    dyn.train(TINY, out, resume=True, progress=False)
    assert [e["epoch"] for e in store.read_index(out)] == [0, 1, 2, 3]
    np.testing.assert_allclose(
        _records(out).metrics["test_ce"], _records(base).metrics["test_ce"], rtol=1e-5
    )


def test_batched_seeds_equal_seeds_one_by_one(tmp_path):
    # three seeds batched (the member count of TINY, so the compiled step is reused)
    cfg = dataclasses.replace(TINY, epochs=2, seeds=(0, 1, 2), arms=(Arm("L2", l2=1e-3),))
    both = _records(_run(tmp_path, cfg, "both"))
    for j, seed in [(0, 0), (2, 2)]:
        one = _records(_run(tmp_path, dataclasses.replace(cfg, seeds=(seed,)), f"s{seed}"))
        np.testing.assert_allclose(
            both.metrics["test_ce"][:, j], one.metrics["test_ce"][:, 0], rtol=1e-4
        )
        for path in both.layers:
            np.testing.assert_allclose(
                both.layers[path]["s"][:, j], one.layers[path]["s"][:, 0], rtol=1e-4, atol=1e-5
            )
    assert not np.allclose(
        both.layers["Dense_1/kernel"]["s"][-1, 0], both.layers["Dense_1/kernel"]["s"][-1, 1]
    )


@pytest.mark.parametrize(
    "change, field",
    [
        ({"widths": (100, 64, 10)}, "widths[0]"),  # Fashion-MNIST needs 784 inputs
        ({"widths": (784, 64, 7)}, "widths[-1]"),
        ({"widths": (784,)}, "widths"),
        ({"widths": (784, 0, 10)}, "widths"),
        ({"arms": (Arm("bad", l2=-1e-4),)}, "arms[0].l2"),
        ({"arms": (Arm("bad", l1=-1.0),)}, "arms[0].l1"),
        ({"lr": 0.0}, "lr"),
        ({"n_train": 10, "batch_size": 64}, "n_train"),
        ({"activation": "gelu"}, "activation"),
        ({"seeds": (1, 1)}, "seeds"),
    ],
)
def test_bad_config_raises_before_training(tmp_path, change, field):
    cfg = dataclasses.replace(DynamicsConfig(), **change)
    out = str(tmp_path / "never")
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        dyn.train(cfg, out, progress=False)
    assert not os.path.exists(out)


def test_config_json_round_trip_and_errors(tmp_path):
    for name in ("small", "default", "cpu", "paper", "scaling", "noise"):
        cfg = load_config(name)
        assert from_dict(json.loads(json.dumps(to_dict(cfg)))) == cfg
    with pytest.raises(ValueError, match="unknown keys"):
        from_dict({"widths": [784, 10], "l2": 1e-4})
    with pytest.raises(ValueError, match="teacher_rank"):
        validate(dataclasses.replace(TINY, teacher_rank=20))
    with pytest.raises(ValueError, match="neither a named config"):
        load_config(str(tmp_path / "missing.json"))


def test_existing_run_needs_resume_and_same_config(tmp_path, base):
    with pytest.raises(ValueError, match="--resume"):
        dyn.train(TINY, base, progress=False)
    with pytest.raises(ValueError, match="lr"):
        dyn.train(dataclasses.replace(TINY, lr=0.1), base, resume=True, progress=False)


def test_inverse_bbp_recovers_planted_spikes(rng):
    n, theta = 300, np.array([3.0, 2.0])
    u, _ = np.linalg.qr(rng.normal(size=(n, 2)))
    v, _ = np.linalg.qr(rng.normal(size=(n, 2)))
    g = 0.5
    W = u @ np.diag(theta) @ v.T + rng.normal(size=(n, n)) * np.sqrt(g / n)
    s = np.linalg.svd(W, compute_uv=False)
    assert s[0] > theta[0] * 1.03  # the noise pushes the outlier out
    est = rec.inverse_bbp(s[:2], g / n, (n, n))
    np.testing.assert_allclose(est, theta, rtol=0.05)
    assert np.all(np.abs(est - theta) < 0.5 * np.abs(s[:2] - theta))  # far closer than raw s
    np.testing.assert_allclose(rec.inverse_bbp_paper(s[:2], g), est, rtol=1e-10)
    assert np.isnan(rec.inverse_bbp(np.array([0.5]), g / n, (n, n)))[0]
    # rectangular: 200 x 800
    u2, _ = np.linalg.qr(rng.normal(size=(200, 1)))
    v2, _ = np.linalg.qr(rng.normal(size=(800, 1)))
    W2 = 3.0 * u2 @ v2.T + rng.normal(size=(200, 800)) * np.sqrt(1 / 800)
    s2 = np.linalg.svd(W2, compute_uv=False)
    assert rec.inverse_bbp(s2[:1], 1 / 800, (200, 800))[0] == pytest.approx(3.0, rel=0.03)


@pytest.mark.parametrize("shape", [(60, 150), (150, 60)])
def test_entry_variance_matches_iid_noise(rng, shape):
    v = 0.3
    W = rng.normal(size=shape) * np.sqrt(v)
    dec = rec.decompose(W)
    np.testing.assert_allclose(dec.s, np.linalg.svd(W, compute_uv=False), rtol=1e-8)
    r = rec.layer_record(dec, top_k=3)
    assert r["v_star"] == pytest.approx(v, rel=0.1)
    assert r["gN"] == pytest.approx(r["v_star"] * shape[0] * shape[1])
    assert r["g_star"] == pytest.approx(r["v_star"] * shape[1])
    U, V = dec.top(3)
    np.testing.assert_allclose(U.T @ W @ V, np.diag(dec.s[:3]), atol=1e-8)
    # overlap ||A^T B||_F^2 / k: basis-invariant, 0 for orthogonal subspaces, j/k for j shared
    U6, _ = dec.top(6)
    q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    assert rec.subspace_overlap(U, U @ q) == pytest.approx(1.0)
    assert rec.subspace_overlap(U, U6[:, 3:]) == pytest.approx(0.0, abs=1e-12)
    assert rec.subspace_overlap(U, U6[:, [0, 3, 4]] @ q) == pytest.approx(1 / 3)


def test_mp_prune_matrix_keeps_spikes_plus_bulk_fraction(rng):
    n = 100
    u, _ = np.linalg.qr(rng.normal(size=(n, 3)))
    v, _ = np.linalg.qr(rng.normal(size=(n, 3)))
    W = u @ np.diag([10.0, 8.0, 6.0]) @ v.T + rng.normal(size=(n, n)) / np.sqrt(n)
    dec = rec.decompose(W)
    W_new, r = rec.mp_prune_matrix(dec, epoch=150, horizon=200.0, fit_error_max=1.0)
    assert r == 3 + int(np.floor(0.25 * 97 + 1e-6))
    np.testing.assert_allclose(np.linalg.svd(W_new, compute_uv=False)[:r], dec.s[:r], rtol=1e-4)
    assert np.linalg.matrix_rank(W_new, tol=1e-4) == r
    assert rec.mp_prune_matrix(dec, 150, 200.0, fit_error_max=1e-9) == (None, n)  # bad fit
    assert rec.keep_fraction(300, 200.0) == 0.0


def test_noise_injection_raises_regularised_loss(base):
    cfg = dataclasses.replace(
        TINY, experiment="noise", noise_levels=(0.0, 1.0, 4.0, 16.0), noise_draws=2
    )
    rows = exp.noise_injection(cfg, exp.load_params(base, TINY), dyn.load_data(TINY))
    J = [r["J"] for r in rows]
    assert all(a < b for a, b in zip(J[:-1], J[1:], strict=True))
    assert rows[0]["eps"] == 0.0 and rows[1]["eps"] == pytest.approx(1.0 / 40)


def test_scaling_metrics_formula(base):
    params = exp.load_params(base, TINY)
    x = dyn.load_data(TINY).x_test[:16]
    v = np.array([0.01, 0.02, 0.03])
    got = exp.scaling_metrics(TINY, params, x, v)
    N, a = 40, []
    for m in range(len(TINY.members)):
        W1 = np.asarray(params["Dense_0"]["kernel"][m]).T  # view (N, d_0)
        W3 = np.asarray(params["Dense_2"]["kernel"][m]).T  # view (d_L, N)
        a.append(
            np.abs(W3).sum(1).max() * np.linalg.norm(x @ W1.T, axis=1) * np.sqrt(np.log(2 * N) / N)
        )
    assert got["N"] == N
    assert got["a_N_mean"] == pytest.approx(np.mean(a), rel=1e-5)
    assert got["tau_N"] == pytest.approx(np.mean(np.sqrt(2 * v * np.log(2 * N * N / exp.DELTA))))


def test_main_dynamics_cli_with_json_config_and_plots(tmp_path):
    arms = (Arm("none"), Arm("L2", l2=1e-2), Arm("L1", l1=1e-3))
    cfg = dataclasses.replace(TINY, epochs=1, arms=arms)
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(to_dict(cfg)))
    out = str(tmp_path / "cli")
    assert dyn.main_dynamics(["--config", str(path), "--out", out]) == 0
    assert dyn.main_dynamics(["--out", out, "--resume", "--epochs", "2", "--no-plots"]) == 0
    assert [e["epoch"] for e in store.read_index(out)] == [0, 1, 2]
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert [a["arm"] for a in summary["arms"]] == ["none", "L2", "L1"]
    for name in ("bulk_edge", "energy", "esd", "spikes"):
        assert os.path.getsize(os.path.join(out, "plots", f"{name}.png")) > 1000


def test_jax_backend_matches_numpy_backend(rng):
    W = (rng.normal(size=(48, 30)) / np.sqrt(30)).astype(np.float32)
    a, b = rec.decompose(W, "numpy"), rec.decompose(W, "jax")
    np.testing.assert_allclose(b.s, a.s, rtol=1e-4, atol=1e-5)
    ra, rb = rec.layer_record(a, 4), rec.layer_record(b, 4)
    assert rb["sigma_plus"] == pytest.approx(ra["sigma_plus"], rel=1e-4)
    np.testing.assert_allclose(np.abs(np.sum(ra["U_top"] * rb["U_top"], 0)), 1.0, atol=1e-3)


def test_scaling_experiment_runs_each_width(tmp_path):
    cfg = dataclasses.replace(
        TINY,
        experiment="scaling",
        epochs=1,
        scaling_widths=(8, 16),
        widths=(12, 8, 8, 3),
        arms=(Arm("L2", l2=1e-3),),
    )
    res = exp.run_experiment(cfg, str(tmp_path / "sc"), plots=True)
    assert [r["N"] for r in res["rows"]] == [8, 16]
    assert all(r["a_N_mean"] > 0 and r["tau_N"] > 0 for r in res["rows"])
    assert os.path.exists(tmp_path / "sc" / "N16" / "index.jsonl")
    assert os.path.getsize(tmp_path / "sc" / "plots" / "scaling.png") > 1000
