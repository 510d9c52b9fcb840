"""The one-shot step: calibration draw, relative output errors, budgets, refit wiring."""

import numpy as np
import pytest

from mpjax import tree
from mpjax.models import random_init, vit
from mpjax.pipeline import oneshot


@pytest.mark.parametrize("shape", [(12, 5), (5, 12), (8, 8)])  # tall, wide, square W
def test_relative_output_error_matches_the_direct_product(shape):
    rng = np.random.default_rng(0)
    w_dense = rng.standard_normal(shape)
    w = w_dense * (rng.random(shape) > 0.5)
    x = rng.standard_normal((40, shape[1]))
    # oracle: the outputs themselves, not the Gram matrix the code uses
    expected = np.linalg.norm(x @ (w - w_dense).T) / np.linalg.norm(x @ w_dense.T)
    assert oneshot.relative_output_error(w_dense, w, x) == pytest.approx(expected, rel=1e-9)
    assert oneshot.relative_output_error(w_dense, w_dense, x) == 0.0
    # removing every weight loses the whole output
    assert oneshot.relative_output_error(w_dense, np.zeros(shape), x) == pytest.approx(1.0)


def test_relative_output_error_is_blind_to_directions_the_inputs_never_take():
    w_dense = np.array([[1.0, 2.0], [3.0, 4.0]])
    x = np.array([[1.0, 0.0], [2.0, 0.0]])  # second input feature always 0
    assert oneshot.relative_output_error(w_dense, w_dense * [1, 0], x) == 0.0
    assert oneshot.relative_output_error(w_dense, w_dense * [0, 1], x) == pytest.approx(1.0)


def test_calibration_images_come_from_the_given_split_without_repeats():
    images = np.arange(50 * 4).reshape(50, 2, 2).astype(np.uint8)
    labels = np.arange(50)
    x, y = oneshot.calibration_images((images, labels), 20, seed=3)
    assert len(set(y.tolist())) == 20 and np.array_equal(x, images[y])
    again = oneshot.calibration_images((images, labels), 20, seed=3)
    other = oneshot.calibration_images((images, labels), 20, seed=4)
    assert np.array_equal(again[1], y) and not np.array_equal(other[1], y)
    for bad in (0, 51):
        with pytest.raises(ValueError, match="--calib-images"):
            oneshot.calibration_images((images, labels), bad, seed=0)


def test_error_rows_follow_the_layer_order_and_default_after_to_before():
    rows = oneshot.error_rows({"b10/k": 0.3, "b2/k": 0.2}, {"b2/k": 0.1})
    assert [(r.path, r.before, r.after) for r in rows] == [("b2/k", 0.2, 0.1),
                                                           ("b10/k", 0.3, 0.3)]


@pytest.fixture(scope="module")
def tiny():
    config = vit.config_for("fmnist")
    params = random_init(config, seed=2)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (24, 28, 28)).astype(np.uint8)
    return config, params, (images, rng.integers(0, 10, 24))


def test_prune_one_shot_needs_calibration_for_reconstruction(tiny):
    config, params, _ = tiny
    with pytest.raises(ValueError, match="--reconstruct"):
        oneshot.prune_one_shot(config, params, "magnitude", "unstructured", 0.5,
                               include="Transformer/encoderblock_0/*", calib=None,
                               reconstruct="parallel")  # fmt: skip


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
def test_refit_keeps_the_mask_and_lowers_every_layer_error(tiny, mode):
    config, params, calib = tiny
    shot = oneshot.prune_one_shot(config, params, "magnitude", "2:4", None,
                                  include="Transformer/encoderblock_[01]/*", calib=calib,
                                  reconstruct=mode)  # fmt: skip
    masks = tree.flatten(shot.masks)
    for path, m in masks.items():  # pruned weights stay exactly zero
        assert np.all(np.asarray(tree.flatten(shot.params)[path])[~np.asarray(m)] == 0)
    assert {e.path for e in shot.errors} == set(masks)
    # magnitude keeps the dense values: refitting them to the dense outputs must help; the
    # block-0 attention inputs are the dense ones in both modes, so there it must help per layer
    before = {e.path: e.before for e in shot.errors}
    after = {e.path: e.after for e in shot.errors}
    first = [p for p in before if "encoderblock_0/MultiHeadDotProductAttention_0/" in p
             and "/out/" not in p]  # fmt: skip
    assert len(first) == 3 and all(after[p] < before[p] for p in first)
    assert np.mean(list(after.values())) < 0.8 * np.mean(list(before.values()))
    # the errors are those of the returned network, recomputed independently
    dense_in = oneshot.capture_inputs(config, params, calib[0])
    own_in = oneshot.capture_inputs(config, shot.params, calib[0])
    views = {p: v for p, v in tree.select(params).items() if p in masks}
    dense_m, new_m = tree.matrices(params, views), tree.matrices(shot.params, views)
    for path in list(after)[-3:]:
        target = dense_in[path] @ np.asarray(dense_m[path]).T
        direct = np.linalg.norm(own_in[path] @ np.asarray(new_m[path]).T - target)
        assert after[path] == pytest.approx(direct / np.linalg.norm(target), rel=1e-4)
