"""Tests for mpjax.training.evaluation and the data mesh it runs on."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_net import apply_fn, init_params, tiny_data

from mpjax.training.evaluation import evaluate
from mpjax.training.images import prepare_images
from mpjax.training.mesh import make_mesh


@pytest.mark.parametrize("batch_size", [7, 50, 1000])
def test_accuracy_matches_argmax_with_padded_batches(batch_size):
    params, (images, labels) = init_params(3), tiny_data(50)
    want = np.mean(np.argmax(apply_fn(params, prepare_images(images), False), -1) == labels)
    assert evaluate(params, apply_fn, images, labels, batch_size) == pytest.approx(float(want))


def test_bad_inputs_and_device_counts_are_refused():
    params, (images, labels) = init_params(), tiny_data(8)
    with pytest.raises(ValueError, match="labels: 7 labels for 8 images"):
        evaluate(params, apply_fn, images, labels[:7])
    with pytest.raises(ValueError, match="need > 0"):
        evaluate(params, apply_fn, images[:0], labels[:0])
    with pytest.raises(ValueError, match="num_devices: 0 requested"):
        make_mesh(0)
    assert make_mesh(1).shape == {"data": 1}
