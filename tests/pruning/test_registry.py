"""The method table and the prune()/pruner() entry points: errors, reports, signals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import tree
from mpjax.pruning import cast, masks, nm, registry


def test_prune_dispatcher_errors_and_report(rng):
    params = {"Dense_0": {"kernel": jnp.asarray(rng.normal(size=(10, 8)), jnp.float32)},
              "Dense_1": {"kernel": jnp.asarray(rng.normal(size=(8, 4)), jnp.float32)}}
    with pytest.raises(ValueError, match="contradicts"):
        registry.prune(params, "magnitude", "2:4", 0.3)
    with pytest.raises(ValueError, match=r"sparsity=1.0 is outside \[0, 1\)"):
        registry.prune(params, "magnitude", "unstructured", 1.0)
    with pytest.raises(ValueError, match="sparsity=-0.2"):
        registry.prune(params, "magnitude", "unstructured", -0.2)
    with pytest.raises(ValueError, match="method='cast' has no unstructured form; it is an N:M"):
        registry.pruner("cast", "unstructured", 0.5)
    with pytest.raises(ValueError, match="needs grad_fn"):
        registry.pruner("ser", "unstructured", 0.5)
    with pytest.raises(ValueError, match="Dense_0/kernel.*d_in=10"):
        registry.prune(params, "magnitude", "2:4")
    with pytest.warns(UserWarning):
        out, m, rep = registry.prune(params, "magnitude", "2:4", on_indivisible="skip")
    assert rep["skipped"] == {"Dense_0/kernel": "d_in=10 is not divisible by n=4"}
    assert m["Dense_0"]["kernel"] is None
    nm.validate_nm(m, 2, 4)
    _, m, rep = registry.prune(params, "lowrank", sparsity=0.5)
    assert rep["lowrank_density"] <= 0.5 and jax.tree.leaves(m) == []
    _, m, rep = registry.prune(params, "magnitude", sparsity=0.25, tokens=3)
    assert rep["summary"]["sparsity"] == pytest.approx(0.25)
    assert rep["summary"]["dense_macs"] == 3 * (80 + 32)
    _, m, rep = registry.prune(params, "seb", sparsity=0.5)  # signals from mp.fit
    assert set(rep["layer_weights"]) == {"Dense_0/kernel", "Dense_1/kernel"}
    assert rep["summary"]["sparsity"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="budget= is used by method='magnitude' or method='wanda'"):
        registry.prune(params, "seb", sparsity=0.5, budget={})


def test_prune_ser_seb_and_cast_from_covariances(rng):
    params = {f"Dense_{i}": {"kernel": jnp.asarray(rng.normal(size=(16, 16)), jnp.float32)}
              for i in range(2)}
    x = jnp.asarray(rng.normal(size=(32, 16)), jnp.float32)

    def grad_fn(p):
        f = lambda q: jnp.sum((x @ q["Dense_0"]["kernel"] @ q["Dense_1"]["kernel"]) ** 2)  # noqa: E731
        return jax.grad(f)(p)

    _, m, rep = registry.prune(params, "hybrid", sparsity=0.4, grad_fn=grad_fn, seb=True,
                            ser_kwargs=dict(steps=1, lr=1e-3))
    assert rep["summary"]["sparsity"] == pytest.approx(0.4, abs=1 / 512)
    assert set(rep["layer_weights"]) == set(tree.select(params))
    covs = {p: cast.block_covariances(x, 4) for p in tree.select(params)}
    _, m, rep = registry.prune(params, "cast", "2:4", calib_covs=covs, grad_fn=grad_fn)
    nm.validate_nm(m, 2, 4)
    with pytest.raises(ValueError, match="calib_covs shape"):
        registry.prune(params, "cast", "4:8", calib_covs=covs)


def test_table_lists_methods_with_valid_patterns_and_docstring_matches():
    assert tuple(registry.METHODS) == ("magnitude", "seb", "ser", "hybrid", "cast", "lowrank",
                                       "cyclic", "wanda", "ria", "sparsegpt")
    for name, method in registry.METHODS.items():
        assert method.name == name and method.doc
        assert method.granularity in ("global", "layer", "row")
        assert method.patterns <= set(registry.PATTERN_KINDS)
        assert not method.needs_grad_fn or method.uses_grad_fn
    # the module docstring shows the table as describe_methods() renders it
    assert registry.describe_methods() in registry.__doc__
    with pytest.raises(TypeError):
        registry.METHODS["x"] = registry.METHODS["magnitude"]  # read-only: use register()


def test_unknown_method_lists_the_registered_ones():
    with pytest.raises(ValueError, match=r"method='nope'; expected one of \('magnitude'"):
        registry.pruner("nope", "unstructured", 0.5)
    with pytest.raises(ValueError, match="method='nope'"):
        registry.prune({"Dense_0": {"kernel": jnp.ones((4, 4))}}, "nope", sparsity=0.5)
    with pytest.raises(ValueError, match="patterns="):
        registry.PruningMethod("bad", frozenset({"block"}), lambda req: None, "?")


def test_register_makes_a_method_reachable_from_prune(rng):
    def build(req):
        def transform(params):  # remove the largest weights: clearly not magnitude pruning
            views = req.views_of(params)
            leaves = tree.flatten(params)
            m = {p: jnp.abs(leaves[p]) <= jnp.quantile(jnp.abs(leaves[p]), 1 - req.sparsity)
                 for p in views}
            m = tree.unflatten_like(params, m)
            return masks.apply_masks(params, m), m
        return transform

    method = registry.PruningMethod("largest", frozenset({"unstructured"}), build,
                                    "largest magnitudes (a test method)")
    assert registry.register(method) is method
    try:
        with pytest.raises(ValueError, match="already registered"):
            registry.register(method)
        assert "| largest | unstructured | none |" in registry.describe_methods()
        params = {"Dense_0": {"kernel": jnp.asarray(rng.normal(size=(8, 8)), jnp.float32)}}
        out, m, rep = registry.prune(params, "largest", sparsity=0.25)
        assert rep["method"] == "largest" and 0 < rep["summary"]["sparsity"] < 0.5
        kept = np.abs(np.asarray(params["Dense_0"]["kernel"]))[np.asarray(m["Dense_0"]["kernel"])]
        assert kept.max() < np.abs(np.asarray(params["Dense_0"]["kernel"])).max()
        with pytest.raises(ValueError, match="method='largest' has no 2:4 form"):
            registry.prune(params, "largest", "2:4")
    finally:
        registry._TABLE.pop("largest")
    assert "largest" not in registry.METHODS


def test_cyclic_through_prune_hits_the_target_and_refuses_jit(rng):
    params = {f"Dense_{i}": {"kernel": jnp.asarray(rng.normal(size=(24, 24)) / 5, jnp.float32)}
              for i in range(2)}
    opts = dict(cycles=3, reg_kwargs=dict(steps=2))
    out, m, rep = registry.prune(params, "cyclic", sparsity=0.1, cycle_kwargs=opts)
    assert rep["summary"]["sparsity"] == pytest.approx(round(0.1 * 2 * 576) / (2 * 576))
    with pytest.raises(ValueError, match="method='cyclic' cannot run under jax.jit"):
        registry.prune(params, "cyclic", sparsity=0.1, jit=True)
    with pytest.raises(ValueError, match="method='cyclic' has no 2:4 form"):
        registry.pruner("cyclic", "2:4")


def test_empty_selection_blames_globs_only_when_given():
    params = {"LayerNorm_0": {"scale": np.ones(8, np.float32)}}
    with pytest.raises(ValueError) as err:
        registry.prune(params, "magnitude", "unstructured", 0.5)
    assert "glob" not in str(err.value) and "weight matrix" in str(err.value)
    dense = {"Dense_0": {"kernel": np.ones((8, 8), np.float32)}}
    with pytest.raises(ValueError, match="glob"):
        registry.prune(dense, "magnitude", "unstructured", 0.5, include=["nothing/*"])
