"""The documented tie rules of the masks, checked exactly against a plain-Python oracle:

* N:M (``nm_matrix_mask``): in each group of ``n`` consecutive inputs the ``k`` highest scores
  are kept; among equal scores the **lower column** is kept.
* exact-count top-k (``topk_mask``): among equal scores the entry with the **lower flat index is
  removed first**.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from mpjax import tree
from mpjax.pruning import masks, nm


def nm_oracle(score: np.ndarray, k: int, n: int) -> np.ndarray:
    """Keep, per row and group, the first ``k`` of the columns sorted by (-score, column)."""
    keep = np.zeros(score.shape, bool)
    for i in range(score.shape[0]):
        for g0 in range(0, score.shape[1], n):
            cols = sorted(range(g0, g0 + n), key=lambda c: (-score[i, c], c))
            keep[i, cols[:k]] = True
    return keep


def topk_oracle(score: np.ndarray, n_remove: int) -> np.ndarray:
    """Remove the first ``n_remove`` of the flat indices sorted by (score, index)."""
    flat = score.ravel()
    order = sorted(range(flat.size), key=lambda i: (flat[i], i))
    keep = np.ones(flat.size, bool)
    keep[order[:n_remove]] = False
    return keep.reshape(score.shape)


def test_nm_ties_keep_the_lower_column_by_hand():
    # all four equal: keep columns 0, 1; two tied below a max: the lower of the two
    score = jnp.array([[1.0, 1.0, 1.0, 1.0], [0.0, 5.0, 2.0, 2.0], [3.0, 3.0, 3.0, 9.0]])
    got = np.asarray(nm.nm_matrix_mask(score, 2, 4))
    assert got.tolist() == [
        [True, True, False, False],
        [False, True, True, False],
        [True, False, False, True],
    ]
    # -0.0 and +0.0 tie too
    z = jnp.array([[-0.0, 0.0, -0.0, 0.0]])
    assert np.asarray(nm.nm_matrix_mask(z, 1, 4)).tolist() == [[True, False, False, False]]


@pytest.mark.parametrize(("k", "n"), [(1, 4), (2, 4), (3, 4), (4, 8), (6, 12)])
@pytest.mark.parametrize("shape", [(12, 24), (24, 48), (48, 24)])  # square-ish, wide, tall
def test_nm_matches_oracle_on_heavy_ties(k, n, shape):
    rng = np.random.default_rng(k * 100 + n + shape[0])
    score = rng.integers(0, 3, size=shape).astype(np.float32)  # three values: ties everywhere
    got = np.asarray(nm.nm_matrix_mask(jnp.asarray(score), k, n))
    np.testing.assert_array_equal(got, nm_oracle(score, k, n))


def test_nm_masks_tie_rule_in_leaf_layout():
    """Through ``nm_masks`` on a Linen kernel ``(d_in, d_out)``: ties keep the lower input."""
    kernel = np.ones((8, 3), np.float32)  # every |w| equal
    m = nm.nm_masks({"Dense_0": {"kernel": jnp.asarray(kernel)}}, 2, 4)["Dense_0"]["kernel"]
    view = tree.to_matrix(np.asarray(m), tree.view_of("Dense_0/kernel", kernel.shape))
    assert np.asarray(view).tolist() == [[True, True, False, False] * 2] * 3


@pytest.mark.parametrize("shape", [(6, 10), (10, 6), (8, 8)])
@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.9])
def test_topk_ties_remove_the_lower_flat_index_first(shape, sparsity):
    rng = np.random.default_rng(int(sparsity * 10) + shape[0])
    score = rng.integers(0, 4, size=shape).astype(np.float32)
    got = np.asarray(masks.topk_mask(jnp.asarray(score), sparsity))
    want = topk_oracle(score, int(masks.n_remove(sparsity, score.size)))
    np.testing.assert_array_equal(got, want)


def test_topk_all_equal_by_hand():
    got = np.asarray(masks.topk_mask(jnp.ones(6), 0.5)).tolist()
    assert got == [False, False, False, True, True, True]
