"""Tests for mpjax.training.recipes: recipes, ``mpjax train``, the shipped Fashion-MNIST ViT."""

from __future__ import annotations

import json

import hypothesis  # noqa: F401  (imported before orbax runs: CPython 3.11.7 AST bug)
import jax
import numpy as np
import pytest

from mpjax import checkpoint, data
from mpjax.models import vit
from mpjax.training import loop as distill
from mpjax.training import recipes as train


def _tiny_idx_dir(path, n_train=128, n_test=32):
    """A Fashion-MNIST-shaped dataset of IDX files: class k has a bright band at row 2k."""
    r = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = r.integers(0, 10, n).astype(np.uint8)
        x = r.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        x[np.arange(n), 2 * y.astype(int) + 4] = 250
        data.write_idx(path / f"{split}-images-idx3-ubyte.gz", x)
        data.write_idx(path / f"{split}-labels-idx1-ubyte.gz", y)
    return path


def test_vit_apply_fn_is_cached_and_traces():
    cfg = vit.config_for("fmnist")
    fn = train.vit_apply_fn(cfg)
    assert train.vit_apply_fn(vit.config_for("fmnist")) is fn  # one jit cache entry per config
    images = jax.ShapeDtypeStruct((2, 28, 28, 1), np.float32)
    assert jax.eval_shape(fn, vit.abstract_params(cfg), images, False).shape == (2, 10)


def test_main_train_writes_model_and_result(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(_tiny_idx_dir(tmp_path)))
    out = tmp_path / "out"
    argv = ["--recipe", "fmnist-vit", "--out", str(out), "--steps", "3", "--batch-size", "16"]
    assert train.main_train(argv) == 0
    result = json.loads((out / "result.json").read_text())
    assert 0.0 <= result["test_accuracy"] <= 1.0 and result["steps"] == 3
    assert result["vit_config"] == json.loads(json.dumps(vit.config_for("fmnist").__dict__))
    params, masks, meta = checkpoint.restore_params(out / "params")
    npz = train.load_npz(out / "fmnist_vit.npz")
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(npz), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    assert masks is None and meta["test_accuracy"] == result["test_accuracy"]
    acc = distill.evaluate(
        npz, train.vit_apply_fn(vit.config_for("fmnist")), *data.load_fashion_mnist("test")
    )
    assert acc == pytest.approx(result["test_accuracy"], abs=1e-6)


def _shipped():
    try:
        return train.load_shipped_model()
    except ValueError as e:
        pytest.fail(f"shipped model missing: {e}")


def test_shipped_model_matches_its_record():
    params, cfg, info = _shipped()
    assert cfg == vit.config_for("fmnist")
    assert info["test_accuracy"] >= 0.85
    try:
        images, labels = data.load_fashion_mnist("test")
    except ValueError:
        pytest.skip("Fashion-MNIST not installed")
    acc = distill.evaluate(params, train.vit_apply_fn(cfg), images, labels)
    assert acc == pytest.approx(info["test_accuracy"], abs=2e-3)


@pytest.mark.slow
def test_distill_benchmark_runs(capsys):
    from mpjax.cli.bench import distill as bench

    argv = ["--steps", "2", "--warmup", "1", "--batch-size", "16"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "masked / unmasked = " in out and "unmasked" in out
