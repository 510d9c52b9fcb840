"""The shared contract every pruning method obeys (STYLE.md): one parametrised test.

tree structure kept; masks bool in leaf layout; achieved sparsity equals the target (exact
count for unstructured, exact k:n pattern by the independent validator for N:M); dtype kept
(float32 and bfloat16); jit equals eager; no recompilation on a second call.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import tree
from mpjax.pruning import budgets as budget
from mpjax.pruning import cast, masks
from mpjax.pruning import registry as prune

WIDTHS = (32, 32, 32, 16)


def mlp_params(seed: int, dtype) -> dict:
    rng = np.random.default_rng(seed)
    p = {}
    for i, (a, b) in enumerate(zip(WIDTHS[:-1], WIDTHS[1:], strict=True)):
        p[f"Dense_{i}"] = {
            "kernel": jnp.asarray(rng.normal(size=(a, b)) / np.sqrt(a), dtype),
            "bias": jnp.asarray(rng.normal(size=(b,)) * 0.1, dtype),
        }
    return p


def forward(p, x):
    h = x
    for i in range(len(WIDTHS) - 1):
        h = h @ p[f"Dense_{i}"]["kernel"].astype(jnp.float32) + p[f"Dense_{i}"]["bias"]
        if i < len(WIDTHS) - 2:
            h = jax.nn.relu(h)
    return h


_X = np.random.default_rng(7).normal(size=(64, WIDTHS[0])).astype(np.float32)
_Y = np.random.default_rng(8).normal(size=(64, WIDTHS[-1])).astype(np.float32)


def grad_fn(p):
    loss = lambda q: jnp.mean((forward(q, _X) - _Y) ** 2)  # noqa: E731
    return jax.grad(loss)(p)


def layer_inputs(p):
    """Inputs entering each Dense kernel (for CAST covariances), on the dense model."""
    out, h = {}, jnp.asarray(_X)
    for i in range(len(WIDTHS) - 1):
        out[f"Dense_{i}/kernel"] = h
        h = h @ p[f"Dense_{i}"]["kernel"].astype(jnp.float32) + p[f"Dense_{i}"]["bias"]
        h = jax.nn.relu(h)
    return out


# (method, pattern, sparsity, extra pruner kwargs builder)
CASES = [
    ("magnitude", "unstructured", 0.5, "global"),
    ("magnitude", "unstructured", 0.3, "layer"),
    ("magnitude", "2:4", None, None),
    ("magnitude", "8:16", None, None),
    ("seb", "unstructured", 0.6, None),
    ("ser", "unstructured", 0.5, None),
    ("hybrid", "unstructured", 0.1, None),
    ("cast", "2:4", None, None),
    ("cast", "4:8", None, "ser"),
    ("lowrank", "unstructured", 0.5, None),
]


def build(method, pattern, sparsity, extra, params):
    kw = {}
    if method == "magnitude" and extra:
        kw["scope"] = extra
    if method == "seb":
        sig = {p: {"edge": 1.0 + 0.1 * i, "hill": 3.0 - 0.2 * i}
               for i, p in enumerate(tree.select(params))}
        kw["layer_weights"] = budget.seb_weights(sig, sparsity)
    if method in ("ser", "hybrid") or extra == "ser":
        kw["grad_fn"] = grad_fn
        kw["ser_kwargs"] = dict(steps=2, lr=0.05)
    if method == "cast":
        k, n, _ = prune.parse_target(pattern, sparsity)
        kw["covs"] = cast.covariances(layer_inputs(params), n)
    return prune.pruner(method, pattern, sparsity, **kw)


def check_sparsity(method, pattern, sparsity, extra, params, m, out):
    views = tree.select(params)
    if pattern != "unstructured":
        k, n = masks.parse_pattern(pattern)
        assert masks.validate_nm(m, k, n, raise_on_error=False) == {}
        assert set(tree.flatten(m)) == set(views)
        return
    if method == "lowrank":
        assert tree.flatten(m) == {}
        for p, v in views.items():
            W = np.asarray(tree.to_matrix(tree.flatten(out)[p], v), np.float32)
            r = prune.rank_for_density(v.shape, 1 - sparsity)
            assert r * (v.d_out + v.d_in) <= (1 - sparsity) * v.d_out * v.d_in
            sv = np.linalg.svd(W, compute_uv=False)
            assert sv[r:].max(initial=0) <= 2e-2 * sv[0]
        return
    flat = tree.flatten(m)
    if extra == "layer":
        for mk in flat.values():
            assert mk.size - int(mk.sum()) == int(np.floor(sparsity * mk.size + 0.5))
    total = sum(mk.size for mk in flat.values())
    removed = total - sum(int(mk.sum()) for mk in flat.values())
    assert removed == int(np.floor(sparsity * total + 0.5)) or extra == "layer"
    # masked-out entries are zero in the output
    for p, mk in flat.items():
        assert not np.any(np.asarray(tree.flatten(out)[p], np.float32)[~np.asarray(mk)])


# bfloat16 on a subset that covers every code path with a dtype-sensitive step (kept small
# for CI time: each case compiles its transformation twice).
BF16 = {0, 5, 7, 9}
PARAMS = [(c, jnp.float32) for c in CASES] + [(CASES[i], jnp.bfloat16) for i in sorted(BF16)]


@pytest.mark.parametrize(
    ("case", "dtype"), PARAMS,
    ids=[f"{c[0]}-{c[1]}-{c[3] or ''}-{jnp.dtype(d).name}" for c, d in PARAMS],
)
def test_pruning_contract(case, dtype):
    method, pattern, sparsity, extra = case
    params = mlp_params(0, dtype)
    fn = build(method, pattern, sparsity, extra, params)

    out, m = fn(params)
    # structure
    assert jax.tree.structure(out) == jax.tree.structure(params)
    masks.check_masks(params, m)
    # dtypes and bool masks
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(params), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
    for mk in jax.tree.leaves(m):
        assert mk.dtype == jnp.bool_
    check_sparsity(method, pattern, sparsity, extra, params, m, out)

    # jit == eager, and a second call with new values does not retrace
    traces = []

    def counted(p):
        traces.append(1)
        return fn(p)

    jf = jax.jit(counted)
    out_j, m_j = jf(params)
    for a, b in zip(jax.tree.leaves(m_j), jax.tree.leaves(m), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    tol = 1e-2 if dtype == jnp.bfloat16 else 1e-4
    for a, b in zip(jax.tree.leaves(out_j), jax.tree.leaves(out), strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32),
                                   atol=tol, rtol=tol)
    params2 = mlp_params(1, dtype)
    out2, m2 = jf(params2)
    jax.block_until_ready(out2)
    assert len(traces) == 1
    check_sparsity(method, pattern, sparsity, extra, params2, m2, out2)
