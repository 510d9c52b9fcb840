"""``mpjax certify``: runs on saved MLP checkpoints, prints the table, and reports bad input
(a mask not disjoint from the pruned weights, an empty data file) as ValueError."""

import jax.numpy as jnp
import numpy as np
import pytest
from mlp_oracle import mlp_network

from mpjax.cli import certify


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    from mpjax import checkpoint

    _model, dense, pruned, x, y = mlp_network()
    root = tmp_path_factory.mktemp("certify")
    masks = {k: {"kernel": jnp.asarray(pruned[k]["kernel"] != 0), "bias": None} for k in dense}
    checkpoint.save_params(root / "dense", dense, meta={"model": "mlp", "activation": "relu"})
    checkpoint.save_params(root / "pruned", pruned, masks=masks, meta={"activation": "relu"})
    wrong = {
        k: {"kernel": jnp.ones_like(m["kernel"]).at[0, 0].set(False), "bias": None}
        for k, m in masks.items()
    }
    checkpoint.save_params(root / "wrongmask", pruned, masks=wrong)
    np.savez(root / "data.npz", x=np.asarray(x), y=np.asarray(y))
    np.savez(root / "empty.npz", x=np.zeros((0, 12), np.float32), y=np.zeros(0, int))
    return root


def test_main_certify_runs(ckpts, capsys):
    argv = [
        str(ckpts / "dense"),
        str(ckpts / "pruned"),
        "--data",
        str(ckpts / "data.npz"),
        "--layer",
        "Dense_1/kernel",
        "Dense_2/kernel",
        "--l2",
        "1e-3",
        "--samples",
        "20",
    ]
    assert certify.main(argv) == 0
    out = capsys.readouterr().out
    assert "Dense_1/kernel" in out and "telescoped budget" in out and "VIOLATED" not in out
    assert certify.main(argv[:4] + ["--mask", str(ckpts / "pruned")]) == 0


def test_main_certify_bad_inputs(ckpts):
    data = ["--data", str(ckpts / "data.npz")]
    with pytest.raises(ValueError, match="not disjoint"):
        certify.main(
            [str(ckpts / "dense"), str(ckpts / "pruned"), *data, "--mask", str(ckpts / "wrongmask")]
        )
    with pytest.raises(ValueError, match="no samples"):
        certify.main(
            [str(ckpts / "dense"), str(ckpts / "pruned"), "--data", str(ckpts / "empty.npz")]
        )


@pytest.mark.parametrize(
    "extra, flag",
    [
        (["--samples", "-5"], "--samples"),
        (["--samples", "0"], "--samples"),
        (["--data", "x.npy"], "--data .*x.npy: not an .npz"),
        (["--data", "cifar10"], "--data cifar10"),
    ],
)
def test_bad_options_name_the_flag(ckpts, tmp_path, extra, flag):
    np.save(tmp_path / "x.npy", np.zeros((4, 12), np.float32))
    with pytest.raises(ValueError, match=flag):
        certify.main([str(ckpts / "dense"), str(ckpts / "pruned"),
                      *[str(tmp_path / e) if e == "x.npy" else e for e in extra]])  # fmt: skip


def test_an_npy_file_named_npz_is_a_clear_error(ckpts, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 12), np.float32))
    (tmp_path / "x.npy").rename(tmp_path / "x.npz")
    with pytest.raises(ValueError, match="--data .*x.npz"):
        certify.main([str(ckpts / "dense"), str(ckpts / "pruned"), "--data",
                      str(tmp_path / "x.npz")])  # fmt: skip


def test_fashion_mnist_is_the_name_and_fmnist_an_alias():
    assert certify.build_parser().parse_args(["a", "b"]).data == "fashion-mnist"
    images, labels = certify._read_data("fmnist")
    assert images.shape[0] == labels.shape[0] == 10000
    assert certify._read_data("fashion-mnist")[0].shape == images.shape
