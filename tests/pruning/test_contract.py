"""The shared contract every pruning method obeys (STYLE.md), over the whole method table.

Every registered method, every pattern kind it declares, float32 and bfloat16: the tree
structure is kept; masks are bool in leaf layout; the achieved sparsity equals the target
(exact count for unstructured, exact k:n pattern by the independent validator for N:M, a
parameter count for methods that return no masks); dtypes are kept; jit equals eager and a
second call does not recompile (methods the table marks jittable), or two eager calls agree.
The inputs each method gets come from what the table says it needs, so a method added
later is covered here without a new test. Every undeclared pattern must raise a ValueError
naming the method and the pattern.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import tree
from mpjax.pruning import budgets, cast, masks, nm, posttrain, registry

WIDTHS = (32, 32, 32, 16)
TARGET = {"unstructured": ("unstructured", 0.3), "nm": ("2:4", None)}


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


def signals_for(method, pattern, sparsity, params, *, with_grad=False, **extra):
    """The pruner inputs the table says ``method`` needs (and a few fast options)."""
    kw = dict(extra)
    if method.needs_layer_weights and pattern == "unstructured":
        sig = {p: {"edge": 1.0 + 0.1 * i, "hill": 3.0 - 0.2 * i}
               for i, p in enumerate(tree.select(params))}
        kw["layer_weights"] = budgets.seb_weights(sig, sparsity)
    if method.needs_grad_fn or (with_grad and method.uses_grad_fn):
        kw["grad_fn"] = grad_fn
        kw["ser_kwargs"] = dict(steps=2, lr=0.05)
    if method.needs_calibration:
        _, n, _ = registry.parse_target(pattern, sparsity)
        kw["covs"] = cast.covariances(layer_inputs(params), n)
    if method.needs_hessian:
        kw["hessians"] = posttrain.layer_hessians(layer_inputs(params))
    if method.needs_input_norms:
        kw["input_norms"] = posttrain.input_norms(layer_inputs(params))
    if not method.jittable:
        kw["cycle_kwargs"] = dict(cycles=4, reg_kwargs=dict(steps=2))
    return kw


def check_sparsity(method, pattern, sparsity, params, m, out, scope="global", budget=None):
    views = tree.select(params)
    if pattern != "unstructured":
        k, n, _ = registry.parse_target(pattern, sparsity)
        assert nm.validate_nm(m, k, n, raise_on_error=False) == {}
        assert set(tree.flatten(m)) == set(views)
        return
    if not method.returns_masks:  # spectral: the factored parameter count meets the target
        assert tree.flatten(m) == {}
        for p, v in views.items():
            W = np.asarray(tree.to_matrix(tree.flatten(out)[p], v), np.float32)
            sv = np.linalg.svd(W, compute_uv=False)
            rank = int(np.sum(sv > 2e-2 * sv[0]))
            assert rank * (v.d_out + v.d_in) <= (1 - sparsity) * v.d_out * v.d_in
        return
    flat = tree.flatten(m)
    assert set(flat) == set(views)
    per = tree.flatten(budget) if budget is not None else dict.fromkeys(flat, sparsity)
    if method.granularity == "row":  # floor(s d_in) removed from every output row
        for p, mk in flat.items():
            removed = (~np.asarray(tree.to_matrix(mk, views[p]))).sum(axis=1)
            assert np.all(removed == int(np.floor(per[p] * views[p].d_in + 1e-9)))
    elif scope == "layer" or budget is not None or method.granularity == "layer":
        for p, mk in flat.items():
            assert mk.size - int(mk.sum()) == int(np.floor(per[p] * mk.size + 0.5))
    else:
        total = sum(mk.size for mk in flat.values())
        removed = total - sum(int(mk.sum()) for mk in flat.values())
        assert removed == int(np.floor(sparsity * total + 0.5))
    for p, mk in flat.items():  # masked-out entries are zero in the output
        assert not np.any(np.asarray(tree.flatten(out)[p], np.float32)[~np.asarray(mk)])


def run_contract(name, pattern, sparsity, dtype, *, with_grad=False, **extra):
    method = registry.METHODS[name]
    params = mlp_params(0, dtype)
    kw = signals_for(method, pattern, sparsity, params, with_grad=with_grad, **extra)
    fn = registry.pruner(name, pattern, sparsity, **kw)
    checks = dict(scope=extra.get("scope", "global"), budget=extra.get("budget"))

    out, m = fn(params)
    assert jax.tree.structure(out) == jax.tree.structure(params)
    masks.check_masks(params, m)
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(params), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
    for mk in jax.tree.leaves(m):
        assert mk.dtype == jnp.bool_
    check_sparsity(method, pattern, sparsity, params, m, out, **checks)

    traces = []

    def counted(p):
        traces.append(1)
        return fn(p)

    # jit == eager, and a second call with new values does not retrace; eager-only methods
    # must at least be deterministic.
    again = jax.jit(counted) if method.jittable else counted
    out_j, m_j = again(params)
    for a, b in zip(jax.tree.leaves(m_j), jax.tree.leaves(m), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    tol = 1e-2 if dtype == jnp.bfloat16 else 1e-4
    for a, b in zip(jax.tree.leaves(out_j), jax.tree.leaves(out), strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32),
                                   atol=tol, rtol=tol)
    params2 = mlp_params(1, dtype)
    out2, m2 = again(params2)
    jax.block_until_ready(out2)
    assert len(traces) == (1 if method.jittable else 2)
    check_sparsity(method, pattern, sparsity, params2, m2, out2, **checks)


CASES = [(name, kind, dtype) for name, method in registry.METHODS.items()
         for kind in registry.PATTERN_KINDS if kind in method.patterns
         for dtype in (jnp.float32, jnp.bfloat16)]


@pytest.mark.parametrize(("name", "kind", "dtype"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{jnp.dtype(c[2]).name}" for c in CASES])
def test_pruning_contract(name, kind, dtype):
    pattern, sparsity = TARGET[kind]
    run_contract(name, pattern, sparsity, dtype)


# Options of some methods, in float32: each is a code path of its own.
VARIANTS = [
    ("magnitude", "unstructured", 0.3, dict(scope="layer")),
    ("magnitude", "unstructured", None, dict(budget="per-layer")),
    ("magnitude", "8:16", None, {}),
    ("hybrid", "unstructured", 0.1, {}),  # the magnitude branch (<= 0.20)
    ("cast", "4:8", None, dict(with_grad=True)),  # SER as CAST's unstructured source
    ("wanda", "unstructured", None, dict(budget="per-layer")),
    ("ria", "4:8", None, {}),
    ("sparsegpt", "unstructured", None, dict(budget="per-layer")),
    ("sparsegpt", "8:16", None, {}),
]


@pytest.mark.parametrize(("name", "pattern", "sparsity", "extra"), VARIANTS,
                         ids=[f"{v[0]}-{v[1]}-{'-'.join(v[3]) or 'default'}" for v in VARIANTS])
def test_pruning_contract_options(name, pattern, sparsity, extra):
    extra = dict(extra)
    if extra.get("budget") == "per-layer":
        views = tree.select(mlp_params(0, jnp.float32))
        extra["budget"] = tree.unflatten_like(mlp_params(0, jnp.float32),
                                              dict(zip(views, (0.2, 0.5, 0.7), strict=True)))
        sparsity = 0.5  # the global target is ignored when a budget is given
    run_contract(name, pattern, sparsity, jnp.float32, **extra)


UNSUPPORTED = [(name, TARGET[kind][0]) for name, method in registry.METHODS.items()
               for kind in registry.PATTERN_KINDS if kind not in method.patterns]


@pytest.mark.parametrize(("name", "pattern"), UNSUPPORTED,
                         ids=[f"{n}-{p}" for n, p in UNSUPPORTED])
def test_unsupported_pattern_names_method_and_pattern(name, pattern):
    sparsity = 0.5 if pattern == "unstructured" else None
    with pytest.raises(ValueError, match=f"method='{name}' has no {pattern} form"):
        registry.pruner(name, pattern, sparsity)
    params = mlp_params(0, jnp.float32)
    with pytest.raises(ValueError, match=f"method='{name}' has no {pattern} form"):
        registry.prune(params, name, pattern, sparsity)
