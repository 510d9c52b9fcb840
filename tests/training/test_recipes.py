"""Tests for mpjax.training.recipes: recipes, train_and_evaluate through ``mpjax train``, and
the distillation benchmark."""

from __future__ import annotations

import json

import hypothesis  # noqa: F401  (imported before orbax runs: CPython 3.11.7 AST bug)
import jax
import numpy as np
import pytest

from mpjax import checkpoint, data
from mpjax.cli import train as train_command
from mpjax.models import vit
from mpjax.npz import read_npz, unflatten_dict
from mpjax.training import DistillConfig, evaluate
from mpjax.training.recipes import DISTILL_CONFIGS, RECIPES, vit_apply_fn


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


def test_recipes_name_their_model_and_config():
    for name, recipe in RECIPES.items():
        assert recipe.name == name and isinstance(recipe.train, DistillConfig)
        if recipe.model == "mlp":
            assert recipe.widths[0] == 784 and recipe.widths[-1] == 10
        else:
            vit.config_for(recipe.model)  # a known model
        assert recipe.train.alpha == 0.0  # recipes train from labels, no teacher
    assert set(DISTILL_CONFIGS) <= set(RECIPES)
    # the fully connected ReLU net of the certificates: [784, 1000, 1000, 10]
    assert RECIPES["fmnist-mlp"].widths == (784, 1000, 1000, 10)
    assert RECIPES["fmnist-mlp"].activation == "relu"


def test_vit_apply_fn_is_cached_and_traces():
    cfg = vit.config_for("fmnist")
    fn = vit_apply_fn(cfg)
    assert vit_apply_fn(vit.config_for("fmnist")) is fn  # one jit cache entry per config
    images = jax.ShapeDtypeStruct((2, 28, 28, 1), np.float32)
    assert jax.eval_shape(fn, vit.abstract_params(cfg), images, False).shape == (2, 10)


def test_main_train_writes_model_and_result(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(data.ENV_VAR, str(_tiny_idx_dir(tmp_path)))
    out = tmp_path / "out"
    argv = ["--recipe", "fmnist-vit", "--out", str(out), "--steps", "3", "--batch-size", "16"]
    assert train_command.main(argv) == 0
    assert capsys.readouterr().out.startswith("fmnist-vit: test accuracy ")
    result = json.loads((out / "result.json").read_text())
    assert 0.0 <= result["test_accuracy"] <= 1.0 and result["steps"] == 3
    assert result["command"] == "mpjax train " + " ".join(argv)
    assert result["vit_config"] == json.loads(json.dumps(vit.config_for("fmnist").__dict__))
    params, masks, meta = checkpoint.restore_params(out / "params")
    npz = unflatten_dict(read_npz(out / "fmnist_vit.npz"))
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(npz), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    assert masks is None and meta["test_accuracy"] == result["test_accuracy"]
    acc = evaluate(npz, vit_apply_fn(vit.config_for("fmnist")), *data.load_fashion_mnist("test"))
    assert acc == pytest.approx(result["test_accuracy"], abs=1e-6)


def test_fmnist_mlp_trains_prunes_and_certifies(tmp_path, monkeypatch, capsys):
    from mpjax.certificates import mlp_from_params
    from mpjax.cli import certify, prune

    monkeypatch.setenv(data.ENV_VAR, str(_tiny_idx_dir(tmp_path)))
    dense = tmp_path / "mlp"
    argv = ["--recipe", "fmnist-mlp", "--out", str(dense), "--steps", "4", "--batch-size", "16"]
    assert train_command.main(argv) == 0
    assert capsys.readouterr().out.startswith("fmnist-mlp: test accuracy ")
    params, masks, meta = checkpoint.restore_params(dense / "params")
    assert meta["activation"] == "relu" and meta["normalize"] == "unit"
    assert meta["mlp"]["widths"] == [784, 1000, 1000, 10] and meta["steps"] == 4
    model = mlp_from_params(params, meta["activation"])  # what certify rebuilds
    assert tuple(model.widths) == (784, 1000, 1000, 10)
    flat = read_npz(dense / "fmnist_mlp.npz")
    assert sorted(flat) == [f"Dense_{i}/{k}" for i in range(3) for k in ("bias", "kernel")]
    # The README example: magnitude-prune it with `mpjax prune`, then certify the step.
    pruned = tmp_path / "mlp-pruned"
    argv = [str(dense / "params"), "--method", "magnitude", "--sparsity", "0.5",
            "--include", "Dense_2/*", "--out", str(pruned)]  # fmt: skip
    assert prune.main(argv) == 0
    capsys.readouterr()
    assert certify.main([str(dense / "params"), str(pruned / "checkpoint"), "--samples", "32"]) == 0
    out = capsys.readouterr().out
    assert "Dense_2/kernel" in out and "Dense_0/kernel" not in out and "telescoped" in out


def test_train_checks_out_and_resumes_its_own_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(data.ENV_VAR, str(_tiny_idx_dir(tmp_path)))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    argv = ["--recipe", "fmnist-mlp", "--steps", "3", "--batch-size", "16", "--out"]
    with pytest.raises(ValueError, match="--out"):
        train_command.main([*argv, str(foreign)])
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    with pytest.raises(ValueError, match="--steps 0: must be > 0"):
        train_command.main([*argv[:2], "--steps", "0", "--out", str(tmp_path / "new")])
    assert not (tmp_path / "new").exists()
    out = tmp_path / "out"
    assert train_command.main([*argv, str(out)]) == 0
    capsys.readouterr()
    assert train_command.main([*argv, str(out)]) == 0  # the same command again: resumes
    assert "resuming from step 3" in capsys.readouterr().err
    rows = (out / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [3]


def test_train_command_flags():
    parser = train_command.build_parser()
    args = parser.parse_args(["--out", "d"])
    assert args.recipe == "fmnist-vit" and args.steps is None and args.data_dir is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", "d", "--recipe", "no-such-recipe"])
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --out is required


@pytest.mark.slow
def test_distill_benchmark_runs(capsys):
    from mpjax.cli.bench import distill as bench

    argv = ["--steps", "2", "--warmup", "1", "--batch-size", "16"]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    assert "masked / unmasked = " in out and "unmasked" in out
