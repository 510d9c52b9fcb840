"""Tests for mpjax.certificates.network: certify_network against a float64 oracle (its
checks hold, a large l2 certifies a decrease of J that happens) and bad-input errors."""

import functools

import jax
import numpy as np
import pytest
from mlp_oracle import ce, mlp_network

from mpjax.certificates.capture import mlp_lipschitz_bound
from mpjax.certificates.network import certify_network
from mpjax.certificates.objectives import params_penalty


@pytest.fixture(scope="module")
def mlp_pair():
    return mlp_network()


def test_certify_network_checks_hold(mlp_pair):
    model, dense, pruned, x, y = mlp_pair
    lip = functools.partial(mlp_lipschitz_bound, activation="relu")
    layers = ["Dense_0/kernel", "Dense_1/kernel", "Dense_2/kernel"]
    rep = certify_network(model, dense, pruned, x, y, layers, lip, l1=1e-3, l2=1e-3)
    assert rep.hypotheses_hold and len(rep.checks) > 0 and all(c.holds for c in rep.checks)
    assert len(rep.layers) == 3
    # the reported losses are those of the two networks (float64 numpy oracle)
    for got, p in ((rep.ce_dense, dense), (rep.ce_pruned, pruned)):
        z = np.asarray(model.apply({"params": p}, x), np.float64)
        assert got == pytest.approx(ce(z, np.asarray(y)), rel=1e-5)
    assert rep.ce_pruned != pytest.approx(rep.ce_dense, rel=1e-3)  # pruning did change CE
    assert all(r.path_check.holds for r in rep.layers)
    assert float(rep.telescoped.total) >= abs(rep.ce_pruned - rep.ce_dense)
    assert mlp_lipschitz_bound(dense, "Dense_2/kernel") == (1.0, True)
    # a huge l2 makes the removal certified, and J did decrease
    rep2 = certify_network(model, dense, pruned, x, y, layers, lip, l1=0.0, l2=100.0)
    assert rep2.elastic_certified
    pen = lambda p: params_penalty(p, 0.0, 100.0)  # noqa: E731
    j_dense = rep2.ce_dense + float(pen(dense))
    j_pruned = rep2.ce_pruned + float(pen(pruned))
    assert j_pruned - j_dense <= rep2.objective_bound + 1e-4 < 0


def test_certify_network_bad_inputs(mlp_pair):
    from mpjax.models.mlp import init

    model, dense, pruned, x, y = mlp_pair
    lip = functools.partial(mlp_lipschitz_bound, activation="relu")
    other = init((12, 11, 8, 4), jax.random.key(0))
    with pytest.raises(ValueError, match="shape"):
        certify_network(model, dense, other, x, y, ["Dense_0/kernel"], lip)
    with pytest.raises(ValueError, match="non-empty"):
        certify_network(model, dense, pruned, x[:0], y[:0], ["Dense_0/kernel"], lip)
    with pytest.raises(ValueError, match="missing"):
        certify_network(model, dense, pruned, x, y, ["Dense_0/bias"], lip)
