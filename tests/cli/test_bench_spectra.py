"""mpjax bench spectra: the numpy baselines are right, the table prints, bad flags are named."""

import numpy as np
import pytest

from mpjax.cli.bench import spectra as bench


@pytest.mark.parametrize("shape", [(12, 30), (30, 12), (16, 16)])
def test_numpy_baselines_match_the_svd_oracle(rng, shape):
    w = rng.standard_normal(shape).astype(np.float32)
    ref = np.linalg.svd(w.astype(np.float64), compute_uv=False)
    for loop in (bench._gram_loop, bench._svd_loop):
        (got,) = loop({"w": w}).values()
        assert got.shape == ref.shape and np.all(np.diff(got) <= 0)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-3 * ref[0])


def test_kernel_times_reports_medians_and_a_small_error(rng):
    params = {f"l{i}": {"kernel": rng.standard_normal((24, 40)).astype(np.float32)}
              for i in range(3)}  # fmt: skip
    row = bench.kernel_times(params, repeats=3, method="gram")
    assert row["matrices"] == 3 and row["err"] < 1e-4
    for stage in ("kernel", "numpy gram", "numpy svd"):
        wall, cpu = row[stage]
        assert wall > 0 and cpu >= 0
    assert bench.param_bytes(params) == 3 * 24 * 40 * 4


def test_tables_and_targets_print(capsys):
    row = {"matrices": 74, "err": 1e-5, "kernel": (1.0, 2.0), "numpy gram": (2.0, 2.5),
           "numpy svd": (6.0, 7.0), "params": 2**30, "cold": 4.0, "warm": 4.5,
           "rss": 1.2 * 2**30, "rc": 0}  # fmt: skip
    rows = {"vit-b16": row, "vit-l16": {**row, "rss": 1.6 * 2**30}}
    bench._print_tables(rows)
    bench._targets(rows)
    out = capsys.readouterr().out
    assert "2.00x" in out and "6.00x" in out  # gram / kernel, svd / kernel
    assert "PASS  vit-b16 kernel vs numpy gram loop: 2.00x" in out
    assert "MISS  vit-b16 CLI warm / numpy gram loop: 2.25x" not in out  # 2.25 <= 2.5
    assert "PASS  vit-b16 CLI warm / numpy gram loop: 2.25x" in out
    assert "MISS  vit-l16 CLI peak RSS / params: 1.60x" in out


def test_bad_models_are_named():
    with pytest.raises(ValueError, match="--models 'vit-x'"):
        bench.main(["--models", "vit-x"])
    with pytest.raises(ValueError, match="--baselines"):
        bench.main(["--models", "vit-ti16", "--baselines", "qr"])
    with pytest.raises(ValueError, match="--repeats"):
        bench.main(["--models", "vit-ti16", "--repeats", "0"])


def test_kernel_times_with_one_baseline_and_one_blas_thread(rng):
    params = {"l": {"kernel": rng.standard_normal((20, 8)).astype(np.float32)}}
    row = bench.kernel_times(params, 1, "svd", baselines=("gram",), blas_threads=1)
    assert "numpy svd" not in row and row["err"] < 1e-4  # checked against the Gram loop
