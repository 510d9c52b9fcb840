"""`mpjax prune` end to end on a small ViT and a tiny IDX dataset written by the test."""

import json

import numpy as np
import pytest

from mpjax import checkpoint, data, tree
from mpjax.cli import dispatch as cli
from mpjax.models import convert, vit
from mpjax.pipeline import job as pipeline
from mpjax.pruning import masks
from mpjax.training import loop as distill


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 320).astype(np.uint8)
    # Class-dependent brightness so the model has something to learn.
    images = (rng.random((320, 28, 28)) * 80 + labels[:, None, None] * 17).astype(np.uint8)
    for split, sl in (("train", slice(0, 256)), ("t10k", slice(256, 320))):
        data.write_idx(root / f"{split}-images-idx3-ubyte.gz", images[sl])
        data.write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels[sl])
    src = root / "vit.npz"
    convert.save_npz(src, convert.random_init(vit.config_for("fmnist"), seed=1))
    return root, src


def _run(setup, tmp_path, **kw):
    root, src = setup
    job = pipeline.PruneJob(source=str(src), out=str(tmp_path / "out"), data=str(root),
                            calib_images=32, batch_size=32, progress=False, **kw)
    return job, pipeline.run(job)


def test_magnitude_with_distillation(setup, tmp_path):
    job, result = _run(setup, tmp_path, method="magnitude", sparsity=0.5, distill_steps=4)
    assert result["sparsity"] == pytest.approx(0.5, abs=1e-6)
    for key in ("acc_dense", "acc_pruned", "acc_distilled"):
        assert 0.0 <= result[key] <= 1.0
    out = tmp_path / "out"
    for name in ("report.md", "report.png", "report.json", "analysis/analysis.csv",
                 "analysis/esd_grid.png"):
        assert (out / name).is_file(), name
    params, m, meta = checkpoint.restore_params(out / "checkpoint")
    masks.check_masks(params, m)
    for path, mask in tree.flatten(m).items():
        leaf = np.asarray(tree.flatten(params)[path])
        assert not np.any(leaf[~np.asarray(mask)]), f"{path}: pruned weight non-zero"
    assert meta["result"]["method"] == "magnitude"
    # the reported accuracies are those of the dense source and of the saved checkpoint
    root, src = setup
    model, test = pipeline.load_model(str(src)), data.load_fashion_mnist("test", data_dir=root)
    acc = {k: distill.evaluate(p, model.apply_fn(0), *test)
           for k, p in (("acc_dense", model.params), ("acc_distilled", params))}
    assert acc == pytest.approx({k: result[k] for k in acc}, abs=1e-9)


def test_cast_nm_with_permutation_and_tome(setup, tmp_path):
    job, result = _run(setup, tmp_path, method="cast", pattern="2:4", tome_r=2, permute=True)
    assert result["permuted"] and result["tome_r"] == 2
    params, m, _ = checkpoint.restore_params(tmp_path / "out" / "checkpoint")
    assert masks.validate_nm(m, 2, 4, raise_on_error=False) == {}
    assert len(tree.flatten(m)) == 24  # q, k, v, out, fc1, fc2 of 4 blocks, all 2:4
    assert result["sparsity"] == pytest.approx(0.5)
    # MACs written out for the fmnist ViT (17 tokens, 7x7x1 patches, d=64, mlp=128, 4 blocks):
    # 2:4 halves qkv/proj/fc1/fc2, ToMe r=2 runs blocks at 17, 15, 13, 11 tokens
    d, mlp, stem = 64, 128, 16 * 49 * 64 + 64 * 10
    dense = stem + 4 * (17 * (4 * d * d + 2 * d * mlp) + 2 * 17 * 17 * d)
    sparse = stem + sum(
        0.5 * t * (4 * d * d + 2 * d * mlp) + 2 * t * t * d for t in (17, 15, 13, 11)
    )
    assert result["macs"]["dense_gmac"] == pytest.approx(dense / 1e9, rel=1e-9)
    assert result["macs"]["reduction"] == pytest.approx(1 - sparse / dense, rel=1e-9)


def test_permutation_alone_keeps_the_dense_function(setup):
    root, src = setup
    model = pipeline.load_model(str(src))
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    permuted, perms = pipeline.permute_lib.permute_vit(model.params, 4)
    assert perms
    f = model.apply_fn(0)
    np.testing.assert_allclose(f(model.params, x), f(permuted, x), atol=1e-5)


def test_cli_prune_without_data(tmp_path, capsys):
    code = cli.main(["prune", "vit-ti16", "--method", "magnitude", "--sparsity", "0.3",
                     "--out", str(tmp_path / "o"), "--include", "*encoderblock_0/*"])
    assert code == 0
    result = json.loads((tmp_path / "o" / "report.json").read_text())
    assert result["sparsity"] == pytest.approx(0.3, abs=1e-6)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(method="magnitude", sparsity=1.5), "sparsity"),
        (dict(method="nope", sparsity=0.5), "--method"),
        (dict(method="cast", pattern="2:4"), "--data"),
        (dict(method="magnitude", pattern="2:4", sparsity=0.3), "contradicts"),
    ],
)
def test_bad_jobs_fail_before_work(kw, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        pipeline.PruneJob(source="vit-ti16", out=str(tmp_path), **kw).validate()
    assert not any(tmp_path.iterdir())
