"""The larger shipped Fashion-MNIST ViT (``shipped-wide``) next to the default one."""

from __future__ import annotations

import numpy as np
import pytest

from mpjax import data, tree
from mpjax.cli import prune as prune_command
from mpjax.models import load_model, shipped, vit
from mpjax.training import evaluate
from mpjax.training.recipes import vit_apply_fn


def _wide():
    try:
        return shipped.load_shipped_model("shipped-wide")
    except ValueError as e:
        pytest.fail(f"wide shipped model missing: {e}")


def test_wide_model_matches_its_config_and_record():
    params, cfg, info = _wide()
    assert cfg == vit.config_for("fmnist-wide")
    assert (cfg.hidden_size, cfg.num_layers, cfg.mlp_dim) == (128, 6, 512)
    assert info["recipe"] == "fmnist-vit-wide" and info["model"] == "fmnist-wide"
    n = sum(int(np.size(x)) for x in tree.flatten(params).values())
    assert n == info["num_params"] and 1_000_000 < n < 1_500_000
    assert info["test_accuracy"] > 0.85


def test_wide_model_is_trained_not_random():
    params, cfg, _ = _wide()
    try:
        images, labels = data.load_fashion_mnist("test")
    except ValueError:
        pytest.skip("Fashion-MNIST not installed")
    assert evaluate(params, vit_apply_fn(cfg), images[:1000], labels[:1000]) > 0.8


def test_default_shipped_model_is_still_the_small_one():
    assert shipped.load_shipped_model()[1] == vit.config_for("fmnist")
    with pytest.raises(ValueError, match="shipped-wide"):
        shipped.load_shipped_model("shipped-huge")


def test_wide_model_loads_by_source_name():
    model = load_model("shipped-wide")
    assert model.config == vit.config_for("fmnist-wide") and model.info.source == "shipped-wide"
    assert model.info.meta["recipe"] == "fmnist-vit-wide"
    prune_command.check_source("shipped-wide")  # a known name, no file needed
    prune_command.check_tome(8, "shipped-wide")  # 17 tokens: up to 8 merges
    with pytest.raises(ValueError, match="--tome 9"):
        prune_command.check_tome(9, "shipped-wide")
