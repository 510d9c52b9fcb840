"""Tests for mpjax.certificates.capture: captured layer inputs equal the sown intermediates,
the MLP Lipschitz bound, and the Jacobian estimate (labelled, never a certificate)."""

import numpy as np
import pytest
from mlp_oracle import mlp_network

from mpjax import tree
from mpjax.certificates.capture import (
    capture_inputs,
    estimated_lipschitz_fn,
    jacobian_lipschitz,
    mlp_lipschitz_bound,
)
from mpjax.certificates.network import certify_network


@pytest.fixture(scope="module")
def mlp_pair():
    return mlp_network()


def test_capture_inputs_matches_sown_intermediates(mlp_pair):
    from mpjax.models.mlp import layer_inputs

    model, dense, _, x, _ = mlp_pair
    logits, psi = capture_inputs(model, dense, x, ["Dense_1/kernel", "Dense_2/kernel"])
    ref_logits, ref = layer_inputs(model, dense, x)
    np.testing.assert_allclose(logits, ref_logits)
    np.testing.assert_allclose(psi["Dense_1/kernel"], ref[1])
    np.testing.assert_allclose(psi["Dense_2/kernel"], ref[2])


def test_jacobian_estimate_is_labelled_and_below_the_bound(mlp_pair):
    model, dense, pruned, x, y = mlp_pair
    xs = x[:4]
    for path in ("Dense_1/kernel", "Dense_2/kernel"):
        a = tree.matrices(dense)[path]
        r = a - tree.matrices(pruned)[path]
        est = jacobian_lipschitz(model, dense, xs, path, r)
        bound, provable = mlp_lipschitz_bound(dense, path)
        assert provable and est.shape == (4,)
        assert np.all(est <= bound * (1 + 1e-5)) and np.all(est > 0)
        if path == "Dense_2/kernel":  # psi2 = + bias: the Jacobian is the identity
            np.testing.assert_allclose(est, 1.0, rtol=1e-6)
    removed = {p: w - tree.matrices(pruned)[p] for p, w in tree.matrices(dense).items()}
    fn = estimated_lipschitz_fn(model, xs, removed)
    rep = certify_network(model, dense, pruned, xs, y[:4], ["Dense_1/kernel"], fn, l2=1e3)
    assert not rep.hypotheses_hold and not rep.elastic_certified
    assert not rep.layers[0].elastic.certified and not rep.layers[0].path_bound.provable
