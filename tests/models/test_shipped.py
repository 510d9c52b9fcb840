"""Tests for mpjax.models.shipped: the Fashion-MNIST ViT shipped with mpjax."""

from __future__ import annotations

import pytest

from mpjax import data
from mpjax.models import shipped, vit
from mpjax.training import evaluate
from mpjax.training.recipes import vit_apply_fn


def _shipped():
    try:
        return shipped.load_shipped_model()
    except ValueError as e:
        pytest.fail(f"shipped model missing: {e}")


def test_assets_live_in_the_package():
    assert shipped.ASSETS.name == "assets" and shipped.ASSETS.parent.name == "mpjax"
    assert (shipped.ASSETS / f"{shipped.SHIPPED_NAME}.npz").is_file()


def test_shipped_model_matches_its_record():
    params, cfg, info = _shipped()
    assert cfg == vit.config_for("fmnist")
    assert info["test_accuracy"] >= 0.85
    try:
        images, labels = data.load_fashion_mnist("test")
    except ValueError:
        pytest.skip("Fashion-MNIST not installed")
    acc = evaluate(params, vit_apply_fn(cfg), images, labels)
    assert acc == pytest.approx(info["test_accuracy"], abs=2e-3)


def test_missing_assets_are_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(shipped, "ASSETS", tmp_path)
    with pytest.raises(ValueError, match="shipped model files missing"):
        shipped.load_shipped_model()
