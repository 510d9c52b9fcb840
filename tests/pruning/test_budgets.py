"""Budgets: layer types, SEB regimes and weights, budget pytrees, the cyclic procedure's layer rule."""

import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import tree
from mpjax.pruning import budgets, masks


def vit_like(rng):
    def k(a, b, scale=1.0):
        return jnp.asarray(rng.normal(size=(a, b)) * scale / np.sqrt(a), jnp.float32)

    return {
        "encoderblock_0": {
            "MultiHeadDotProductAttention_0": {"query": {"kernel": k(32, 32)}},
            "MlpBlock_0": {"Dense_0": {"kernel": k(32, 64)}, "Dense_1": {"kernel": k(64, 32)}},
        },
        "head": {"kernel": k(32, 8)},
    }


@pytest.mark.parametrize(
    ("path", "kind"),
    [("encoderblock_0/MultiHeadDotProductAttention_0/query/kernel", "attention"),
     ("blocks.0.attn.proj.weight", "attention"),
     ("encoderblock_0/MlpBlock_0/Dense_0/kernel", "mlp"),
     ("blocks.1.mlp.fc2.weight", "mlp"),
     ("head/kernel", "other"),
     ("Dense_0/kernel", "other")],
)
def test_layer_type(path, kind):
    assert budgets.layer_type(path) == kind


def test_seb_regimes():
    assert budgets.seb_regime(0.1).signal == "hill"
    assert budgets.seb_regime(0.2) == budgets.SEBRegime("hill", budgets.seb_regime(0.1).beta, 0.3)
    assert budgets.seb_regime(0.3).s_d == 0.5 and budgets.seb_regime(0.3).beta["mlp"] == 1.0
    assert budgets.seb_regime(0.5).beta["attention"] == 1.25 and budgets.seb_regime(0.5).s_d == 0.7
    r = budgets.seb_regime(0.6)
    assert (r.beta["attention"], r.beta["mlp"], r.beta["other"], r.s_d) == (1.0, 2.0, 1.5, 0.85)
    assert budgets.seb_regime(0.25, plain_below=0.3).signal == "none"


def test_seb_weights_formula():
    sig = {"a/attn/kernel": {"edge": 1.0, "hill": 2.0}, "b/mlp/kernel": {"edge": 2.0, "hill": 4.0},
           "c/kernel": {"edge": 3.0, "hill": 9.0}}
    s = 0.6
    w = budgets.seb_weights(sig, s)
    z = (np.array([1.0, 2.0, 3.0]) - 2.0) / np.std([1.0, 2.0, 3.0])
    d = 1 - s / 0.85
    expect = [max(0.1, 1 + 1.0 * d * z[0]), 1.0, max(0.1, 1 + 1.5 * d * z[2])]
    np.testing.assert_allclose(list(w.values()), expect)
    # the floor at 0.1 applies for extreme z
    many = {f"l{i}/kernel": {"edge": 1.0, "hill": 3.0} for i in range(10)}
    many["l0/kernel"]["edge"] = -100.0  # z = -3: 1 + 1.0 * 0.4 * (-3) < 0.1
    assert min(budgets.seb_weights(many, 0.3).values()) == pytest.approx(0.1)
    # above s_d the reweighting fades to 1
    assert set(budgets.seb_weights(sig, 0.9).values()) == {1.0}


def test_seb_masks_high_edge_pruned_harder(rng):
    p = vit_like(rng)
    views = tree.select(p)
    sig = {q: {"edge": 1.0, "hill": 3.0} for q in views}
    hot = "encoderblock_0/MlpBlock_0/Dense_0/kernel"
    sig[hot]["edge"] = 3.0
    w = budgets.seb_weights(sig, 0.5)
    m = tree.flatten(budgets.seb_masks(p, 0.5, w))
    plain = tree.flatten(masks.magnitude_masks(p, 0.5, scope="global"))
    total = sum(x.size for x in m.values())
    assert total - sum(int(x.sum()) for x in m.values()) == total // 2
    assert float(m[hot].mean()) < float(plain[hot].mean())


def test_masks_from_budget_exact_and_monotone(rng):
    p = vit_like(rng)
    views = tree.select(p)
    b = tree.unflatten_like(p, {q: 0.1 * (i + 1) for i, q in enumerate(views)})
    m1 = budgets.masks_from_budget(p, b)
    for (q, mk), s in zip(tree.flatten(m1).items(), tree.flatten(b).values(), strict=True):
        assert mk.size - int(mk.sum()) == int(np.floor(s * mk.size + 0.5)), q
    back = budgets.budget_of(m1)
    np.testing.assert_allclose(list(tree.flatten(back).values()),
                               list(tree.flatten(b).values()), atol=0.5 / 256 + 1e-9)
    # a later budget keeps earlier removals removed, even if weights grew back: the removed
    # entries are now the largest of their layer, so plain magnitude would keep them all
    grown = tree.unflatten_like(p, {
        q: jnp.where(tree.flatten(m1)[q], w, 100.0) for q, w in tree.flatten(p).items()
        if q in views})
    b2 = tree.unflatten_like(p, {q: 0.5 for q in views})
    m2 = budgets.masks_from_budget(grown, b2, masks=m1)
    free = budgets.masks_from_budget(grown, b2)  # negative control: no memory of m1
    for q, a in tree.flatten(m1).items():
        c, f = np.asarray(tree.flatten(m2)[q]), np.asarray(tree.flatten(free)[q])
        assert not np.any(c & ~np.asarray(a)), q
        assert c.size - int(c.sum()) == int(np.floor(0.5 * c.size + 0.5)), q
        assert np.all(f[~np.asarray(a)]), q  # without masks= the regrown weights come back


def test_cycle_budget_rule(rng):
    p = vit_like(rng)
    q = "head/kernel"
    fits = {q: {"fit_error": 0.2, "bulk_fraction": 0.9}}
    b = tree.flatten(budgets.cycle_budget(p, fits, cycle=3))
    k = (0.8 * 0.9) ** (1.5 / 3) * 0.06 * 1.02**3 * 256
    assert b[q] == pytest.approx(k / 256)
    assert list(b) == [q]
    m = budgets.masks_from_budget(p, budgets.cycle_budget(p, fits, cycle=1))
    b2 = tree.flatten(budgets.cycle_budget(p, fits, cycle=2, masks=m))
    nnz = int(tree.flatten(m)[q].sum())
    assert b2[q] == pytest.approx((256 - nnz + (0.72) ** 0.75 * 0.06 * 1.02**2 * nnz) / 256)
    with pytest.raises(ValueError, match="cycle"):
        budgets.cycle_budget(p, fits, cycle=0)


def test_layer_signals_from_mp(rng):
    p = vit_like(rng)
    sig = budgets.layer_signals(p)
    assert set(sig) == set(tree.select(p))
    for v in sig.values():
        assert np.isfinite(v["edge"]) and v["edge"] > 0
        assert 0.0 <= v["bulk_fraction"] <= 1.0
