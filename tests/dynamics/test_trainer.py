"""Tests of the member trainer: training progress, MP pruning, resume, vmap over seeds."""

import dataclasses
import os

import numpy as np
import pytest

from mpjax.dynamics import Arm, load_params, load_run, member_strengths, store, train


def test_metrics_and_training_progress(base):
    run = load_run(base)
    ce = run.metrics["train_ce"]
    assert np.isnan(ce[0]).all() and np.all(ce[-1] < ce[1])  # the loss falls
    assert np.all(run.metrics["test_acc"][-1] > 0.5)
    # L2 shrinks the bulk of the hidden layer relative to no regularisation
    edge = run.layers["Dense_1/kernel"]["sigma_plus"][-1]
    assert edge[1] < edge[0]


def test_mp_pruning_truncates_rank_and_reports_factored_params(base):
    run = load_run(base)
    lay = run.layers["Dense_1/kernel"]  # 32 x 40, p = 32 >= MIN_PRUNE_P
    r = int(lay["rank"][-1, 2])
    assert r < 32 and lay["rank"][-1, 0] == 32  # only the MP member is truncated
    assert np.all(lay["s"][-1, 2, r:] < 1e-4 * lay["s"][-1, 2, 0])
    expect = r * (32 + 40) if r * 72 < 32 * 40 else 32 * 40
    assert lay["params_effective"][-1, 2] == expect
    assert run.layers["Dense_0/kernel"]["rank"][-1, 2] == 12  # p = 12 < 32: never pruned


def test_recorded_penalty_is_the_elastic_net_of_each_member(tiny, base):
    params = load_params(base, tiny)
    l1, l2 = member_strengths(tiny)
    got = load_run(base).metrics["penalty"][-1]
    for m in range(len(tiny.members)):
        kernels = [np.asarray(params[f"Dense_{i}"]["kernel"][m], np.float64) for i in range(3)]
        expect = l2[m] * sum(np.sum(k * k) for k in kernels) + l1[m] * sum(
            np.sum(np.abs(k)) for k in kernels
        )
        assert got[m] == pytest.approx(expect, rel=1e-5)
    assert got[0] == 0.0 and got[1] > 0  # the unregularised member pays nothing


def test_resume_extends_without_gaps_or_duplicates(run_in, tiny, base):
    out = run_in(dataclasses.replace(tiny, epochs=1))
    train(tiny, out, resume=True, progress=False)  # extend to 3 epochs
    entries = store.read_index(out)
    assert [e["epoch"] for e in entries] == [0, 1, 2, 3]
    assert sorted(os.listdir(os.path.join(out, "epochs"))) == [
        f"epoch_{e:05d}.npz" for e in range(4)
    ]
    a, b = load_run(out), load_run(base)
    np.testing.assert_allclose(a.metrics["test_acc"], b.metrics["test_acc"])
    for path in a.layers:
        np.testing.assert_allclose(a.layers[path]["s"], b.layers[path]["s"], rtol=1e-5, atol=1e-6)
    # resuming a finished run adds nothing
    train(tiny, out, resume=True, progress=False)
    assert [e["epoch"] for e in store.read_index(out)] == [0, 1, 2, 3]


def test_batched_seeds_equal_seeds_one_by_one(run_in, tiny):
    # three seeds batched (the member count of TINY, so the compiled step is reused)
    cfg = dataclasses.replace(tiny, epochs=2, seeds=(0, 1, 2), arms=(Arm("L2", l2=1e-3),))
    both = load_run(run_in(cfg, "both"))
    for j, seed in [(0, 0), (2, 2)]:
        one = load_run(run_in(dataclasses.replace(cfg, seeds=(seed,)), f"s{seed}"))
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


def test_existing_run_needs_resume_and_same_config(tiny, base):
    with pytest.raises(ValueError, match="--resume"):
        train(tiny, base, progress=False)
    with pytest.raises(ValueError, match="lr"):
        train(dataclasses.replace(tiny, lr=0.1), base, resume=True, progress=False)
