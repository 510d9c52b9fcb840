"""Shared by the certificate tests and the ``mpjax certify`` CLI test (a plain module, not a
conftest: ``from mlp_oracle import ...``): float64 numpy oracles (random MLPs, their forward
pass, cross-entropy, the elastic-net objective and accuracy; independent of Flax and of mpjax)
and a small dense / pruned Flax MLP (:func:`mlp_network`)."""

import math

import numpy as np

ACTS = {"relu": lambda v: np.maximum(v, 0.0), "abs": np.abs}
THETAS = np.linspace(0.0, 1.0, 6)  # includes theta = 0 and theta = 1
WIDTHS = (9, 8, 7, 4)  # fixed shapes: jax compiles each op once for all seeds


def make_net(seed, act="relu", widths=WIDTHS):
    """Random MLP (float64 numpy oracle): matrices ``(d_out, d_in)``, biases, data, labels."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.5, 2.0)
    ws = [
        rng.normal(size=(b, a)) * scale / math.sqrt(a)
        for a, b in zip(widths, widths[1:], strict=False)
    ]
    bs = [rng.normal(size=b) * 0.3 for b in widths[1:]]
    x = rng.normal(size=(24, widths[0]))
    y = rng.integers(0, widths[-1], 24)
    return ws, bs, x, y, ACTS[act], act


def forward(ws, bs, x, act):
    """Logits and every layer's input (the oracle; float64 numpy, independent of Flax)."""
    inputs, h = [], x
    for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
        inputs.append(h)
        h = h @ w.T + b
        if i < len(ws) - 1:
            h = act(h)
    return h, inputs


def ce(z, y):
    """Mean cross-entropy oracle (float64)."""
    m = z.max(1, keepdims=True)
    return float(np.mean(m[:, 0] + np.log(np.exp(z - m).sum(1)) - z[np.arange(len(y)), y]))


def en(z, y, a, l1, l2):
    """Elastic-net objective oracle ``CE + l2 ||a||_F^2 + l1 ||a||_1``."""
    return ce(z, y) + l2 * float(np.sum(a**2)) + l1 * float(np.sum(np.abs(a)))


def acc(z, y):
    """Accuracy oracle."""
    return float(np.mean(np.argmax(z, 1) == y))


def random_split(w, rng, frac):
    """``(S, R)`` with about ``frac`` of the entries of ``w`` moved to ``R``."""
    keep = rng.uniform(size=w.shape) >= frac
    return np.where(keep, w, 0.0), np.where(keep, 0.0, w)


def with_layer(ws, k, a):
    """``ws`` with layer ``k`` replaced by ``a``."""
    return ws[:k] + [a] + ws[k + 1 :]


def mlp_network():
    """``(model, dense, pruned, x, y)``: a 12-10-8-4 ReLU Flax MLP, each matrix pruned at its
    median magnitude, 32 Gaussian inputs and 4 balanced labels."""
    import jax
    import jax.numpy as jnp

    from mpjax import tree
    from mpjax.models.mlp import MLP, init

    widths = (12, 10, 8, 4)
    model = MLP(widths, "relu")
    dense = init(widths, jax.random.key(0))
    mats = tree.matrices(dense)
    pruned_mats = {
        p: jnp.where(jnp.abs(w) > jnp.median(jnp.abs(w)), w, 0.0) for p, w in mats.items()
    }
    pruned = tree.replace_matrices(dense, pruned_mats, tree.select(dense))
    x = jax.random.normal(jax.random.key(1), (32, 12))
    y = jnp.arange(32) % 4
    return model, dense, pruned, x, y
