"""Tests for mpjax.mp.analysis (per-layer report, files) and mpjax.mp.plots."""

import csv
import json
import math

import numpy as np
import pytest

from mpjax.mp import analysis, plots, spectra
from mpjax.mp import fits as mp


def noisy_params(rng):
    """A Linen-style tree: Dense, attention in/out, Conv, plus a bias and a LayerNorm."""

    def normal(shape, d_in):
        return (rng.standard_normal(shape) / np.sqrt(d_in)).astype(np.float32)

    return {
        "Dense_0": {"kernel": normal((48, 96), 48), "bias": np.zeros(96, np.float32)},
        "attn": {
            "query": {"kernel": normal((48, 4, 12), 48)},
            "out": {"kernel": normal((4, 12, 48), 48)},
        },
        "Conv_0": {"kernel": normal((3, 3, 4, 32), 36)},
        "LayerNorm_0": {"scale": np.ones(48, np.float32)},
    }


def test_rows_cover_every_matrix_with_sane_numbers(rng):
    report = analysis.analyze(noisy_params(rng), progress=False)
    assert sorted(r["path"] for r in report.rows) == sorted(
        ["Dense_0/kernel", "attn/query/kernel", "attn/out/kernel", "Conv_0/kernel"]
    )
    assert list(report.rows[0]) == list(analysis.COLUMNS)
    shapes = {r["path"]: r["shape"] for r in report.rows}
    assert shapes["Dense_0/kernel"] == [96, 48] and shapes["Conv_0/kernel"] == [32, 36]
    for r in report.rows:
        d_out, d_in = r["shape"]
        p, n = min(d_out, d_in), max(d_out, d_in)
        assert r["status"] == "ok"
        # N(0, 1/d_in) weights: edge (sqrt(n) + sqrt(p)) / sqrt(d_in), within finite-size slack
        assert r["sigma_plus"] == pytest.approx((np.sqrt(n) + np.sqrt(p)) / np.sqrt(d_in), rel=0.08)
        assert 0.9 <= r["bulk_fraction"] <= 1.0 and r["n_spikes"] <= 3
        assert r["alpha_hill"] > 1 and 1 <= r["stable_rank"] <= p
        assert report.spectra[r["path"]].shape == (p,)
        assert report.fits[r["path"]].edge == r["sigma_plus"]


def test_include_exclude_and_spectra_methods_agree(rng):
    params = noisy_params(rng)
    only = analysis.analyze(params, include="attn/*", exclude="*out*", progress=False)
    assert [r["path"] for r in only.rows] == ["attn/query/kernel"]
    gram = analysis.analyze(params, progress=False)
    svd = analysis.analyze(params, spectra_method="svd", progress=False)
    for a, b in zip(gram.rows, svd.rows, strict=True):
        assert a["sigma_plus"] == pytest.approx(b["sigma_plus"], rel=1e-4)
    with pytest.raises(ValueError, match="no weight matrix"):
        analysis.analyze(params, include="nothing*", progress=False)


def test_nan_weight_names_the_layer(rng):
    params = noisy_params(rng)
    params["attn"]["out"]["kernel"][0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="attn/out/kernel"):
        analysis.analyze(params, progress=False)


def test_degenerate_layers_get_status_and_files_hold_no_nan(rng, tmp_path):
    u = rng.standard_normal((48, 2))  # shapes shared with noisy_params: no new compiles
    params = {
        "tiny": {"kernel": rng.standard_normal((4, 6)).astype(np.float32)},
        "zero": {"kernel": np.zeros((36, 32), np.float32)},
        "lowrank": {"kernel": (u @ rng.standard_normal((2, 48))).astype(np.float32)},
        "good": {"kernel": rng.standard_normal((48, 48)).astype(np.float32)},
    }
    report = analysis.analyze(params, progress=False)
    status = {r["path"].split("/")[0]: r["status"].split(":")[0] for r in report.rows}
    assert status == {
        "tiny": "too_small",
        "zero": "all_zero",
        "lowrank": "rank_deficient",
        "good": "ok",
    }
    for r in report.rows:
        for key, value in r.items():
            if isinstance(value, float):
                assert math.isfinite(value), (r["path"], key)
    assert report.row("zero/kernel")["alpha_hill"] is None
    report.to_json(tmp_path / "a.json")  # allow_nan=False: would raise on NaN
    report.to_csv(tmp_path / "a.csv")
    layers = json.loads((tmp_path / "a.json").read_text())["layers"]
    assert [x["path"] for x in layers] == [r["path"] for r in report.rows]
    rows = {r["path"]: r for r in csv.DictReader(open(tmp_path / "a.csv"))}
    assert rows["zero/kernel"]["shape"] == "32x36" and rows["zero/kernel"]["alpha_hill"] == ""
    assert "nan" not in (tmp_path / "a.csv").read_text().lower()


def test_analyze_to_dir_writes_report_and_caps_panels(rng, tmp_path):
    params = {
        f"Dense_{i}": {"kernel": rng.standard_normal((48, 48)).astype(np.float32)} for i in range(5)
    }
    report = analysis.analyze_to_dir(params, tmp_path / "rep", max_panels=3, progress=False)
    for name in ("analysis.csv", "analysis.json", "esd_grid.png", "edges.png"):
        path = tmp_path / "rep" / name
        assert path.stat().st_size > 100, name
    assert plots.esd_grid(report, tmp_path / "g.png", max_panels=2) == 2
    assert len(report) == 5


def test_bad_fit_options_fail_before_spectra(rng):
    with pytest.raises(ValueError, match="beta"):
        analysis.analyze(noisy_params(rng), beta=1.5, progress=False)
    assert mp.METHODS == ("bema", "gavish_donoho", "calibrated")


VIT_TI_SHAPES = (
    (192, 192),
    (768, 192),
    (192, 768),
    (576, 192),
)  # (d_out, d_in): q/k/v, fc1, fc2, qkv


def _vit_shaped(seed: int, spiked: bool) -> tuple[np.ndarray, int]:
    """A ViT-Ti-shaped ``(d_out, d_in)`` matrix: N(0, 1/d_in) noise plus, when ``spiked``,
    1-10 rank-one spikes of singular value 1-3x the asymptotic MP edge."""
    rng = np.random.default_rng(seed)
    d_out, d_in = VIT_TI_SHAPES[seed % len(VIT_TI_SHAPES)]
    w = rng.standard_normal((d_out, d_in)) / np.sqrt(d_in)
    k = int(rng.integers(1, 11)) if spiked else 0
    if k:
        edge = (np.sqrt(d_out) + np.sqrt(d_in)) / np.sqrt(d_in)
        u, _ = np.linalg.qr(rng.standard_normal((d_out, k)))
        v, _ = np.linalg.qr(rng.standard_normal((d_in, k)))
        w = w + (u * rng.uniform(1, 3, k) * edge) @ v.T
    return w.astype(np.float32), k


def test_default_spike_count_is_right_on_noise_and_planted_spikes():
    """40 pure-noise and 40 spiked ViT-shaped layers: ``n_spikes`` (calibrated, 5% false-spike
    rate) is right on nearly all; ``n_above_edge`` (BEMA, beta = 0.8) over-counts on noise."""
    want, params = {}, {}
    for i in range(80):
        w, k = _vit_shaped(i, spiked=i >= 40)
        params[f"layer_{i}"] = {"kernel": w.T}  # Linen layout (d_in, d_out)
        want[f"layer_{i}/kernel"] = k
    report = analysis.analyze(params, progress=False)
    assert report.config["spike_method"] == "calibrated"
    right = {"noise": 0, "spiked": 0}
    bema_right = {"noise": 0, "spiked": 0}
    for r in report.rows:
        kind = "spiked" if want[r["path"]] else "noise"
        right[kind] += r["n_spikes"] == want[r["path"]]
        bema_right[kind] += r["n_above_edge"] == want[r["path"]]
        assert r["n_spikes"] == int(np.sum(report.spectra[r["path"]] > r["spike_edge"]))
        assert r["n_above_edge"] == int(np.sum(report.spectra[r["path"]] > r["sigma_plus"]))
    assert right["noise"] >= 36 and right["spiked"] >= 39, right
    assert bema_right["noise"] <= 25, bema_right  # the paper's edge is not a spike detector
    lines = analysis.summary_lines(report)
    assert "calibrated" in lines[1] and "n_above_edge" in lines[2]


def test_spike_method_option(rng):
    params = noisy_params(rng)
    report = analysis.analyze(params, spike_method="bema", progress=False)
    assert all(r["n_spikes"] == r["n_above_edge"] for r in report.rows)
    assert all(r["spike_edge"] == r["sigma_plus"] for r in report.rows)
    with pytest.raises(ValueError, match="method"):
        analysis.analyze(params, spike_method="svd", progress=False)


def test_nonfinite_spectrum_gives_null_cells_not_numbers(tmp_path):
    """Finite weights whose float32 Gram overflows: status nonfinite, no number reported."""
    rng = np.random.default_rng(0)
    params = {
        "huge": {"kernel": (rng.standard_normal((48, 48)) * 1e30).astype(np.float32)},
        "good": {"kernel": rng.standard_normal((48, 48)).astype(np.float32)},
    }
    report = analysis.analyze(params, progress=False)
    row = report.row("huge/kernel")
    assert row["status"].startswith("nonfinite")
    for key in (
        "sigma2",
        "sigma_plus",
        "fit_error",
        "bulk_fraction",
        "n_spikes",
        "n_above_edge",
        "spike_edge",
    ):
        assert row[key] is None, key
    assert report.row("good/kernel")["status"] == "ok"
    report.to_json(tmp_path / "a.json")  # allow_nan=False
    report.to_csv(tmp_path / "a.csv")
    layers = {x["path"]: x for x in json.loads((tmp_path / "a.json").read_text())["layers"]}
    assert layers["huge/kernel"]["n_spikes"] is None and layers["good/kernel"]["n_spikes"] == 0
    cells = [v.lower() for r in csv.DictReader(open(tmp_path / "a.csv")) for v in r.values()]
    assert not {"nan", "inf", "-inf", "-1"} & set(cells)


def test_conv1d_and_torch_conv1d_layers_are_analysed(rng):
    linen = {"Conv_0": {"kernel": rng.standard_normal((3, 16, 32)).astype(np.float32)}}
    assert analysis.analyze(linen, progress=False).rows[0]["shape"] == [32, 48]
    torch_layout = {"conv.weight": rng.standard_normal((32, 16, 3)).astype(np.float32)}
    assert analysis.analyze(torch_layout, progress=False).rows[0]["shape"] == [32, 48]


def test_empty_selection_blames_globs_only_when_given(rng):
    leaves = {"LayerNorm_0": {"scale": np.ones(8, np.float32)}, "bias": np.zeros(8, np.float32)}
    with pytest.raises(ValueError, match="weight matrix") as err:
        analysis.analyze(leaves, progress=False)
    assert "glob" not in str(err.value) and "include" not in str(err.value)
    with pytest.raises(ValueError, match="include='nothing\\*'.*check the globs"):
        analysis.analyze(noisy_params(rng), include="nothing*", progress=False)


def test_complex_kernel_is_refused_with_its_path(rng):
    params = noisy_params(rng)
    params["Dense_0"]["kernel"] = params["Dense_0"]["kernel"] * (1 + 1j)
    with pytest.raises(ValueError, match="Dense_0/kernel.*complex"):
        analysis.analyze(params, progress=False)


def lazy_npz(params, tmp_path):
    """``params`` written to an ``.npz`` and opened lazily."""
    from mpjax import lazy, tree

    np.savez(tmp_path / "p.npz", **tree.flatten(params))
    return lazy.open_npz(tmp_path / "p.npz")


@pytest.mark.parametrize("group_bytes", [1, 48 * 96 * 4 * 2, analysis.GROUP_BYTES])
def test_lazy_tree_gives_the_rows_of_the_tree_in_memory(rng, tmp_path, group_bytes):
    params = noisy_params(rng)
    params.update(
        {f"Dense_{i}": {"kernel": noisy_params(rng)["Dense_0"]["kernel"]} for i in (1, 2, 3)}
    )
    eager = analysis.analyze(params, progress=False)
    t = lazy_npz(params, tmp_path)
    reads = []
    read = t._read
    t._read = lambda keys: (reads.append(list(keys)), read(keys))[1]
    lazy = analysis.lazy_singular_values(t, eager.views, group_bytes=group_bytes)
    assert lazy.keys() == eager.spectra.keys()
    assert all(np.array_equal(lazy[p], eager.spectra[p]) for p in lazy)
    assert sorted(p for r in reads for p in r) == sorted(eager.views)  # each layer read once
    if group_bytes == 1:  # one matrix a chunk, joined up to one a core: never the whole tree
        assert max(len(r) for r in reads) < 2 * spectra.cores() < len(eager.views)
    report = analysis.analyze(t, progress=False)
    assert report.rows == eager.rows and report.config == eager.config
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    eager.to_json(tmp_path / "a" / "r.json"), report.to_json(tmp_path / "b" / "r.json")
    assert (tmp_path / "a" / "r.json").read_bytes() == (tmp_path / "b" / "r.json").read_bytes()


def test_layer_groups_are_runs_of_the_source_order_within_the_byte_budget():
    from mpjax import tree

    views = {
        f"b{i}/{n}/kernel": tree.view_of(f"b{i}/{n}/kernel", s)
        for i in range(6)
        for n, s in (("tall", (8, 32)), ("wide", (32, 8)), ("sq", (16, 16)))
    }  # every layer 1 KiB in float32
    order = ["not/a/view", *reversed(views)]  # the source's order; other leaves skipped
    groups = analysis.layer_groups(views, group_bytes=4 * 1024, order=order)
    assert [p for g in groups for p in g] == order[1:]  # read front to back, each once
    assert [len(g) for g in groups] == [4, 4, 4, 4, 2]
    assert [p for g in analysis.layer_groups(views, 4 * 1024) for p in g] == list(views)
    assert [len(g) for g in analysis.layer_groups(views, 1)] == [1] * 18  # one layer at least
    assert [len(g) for g in analysis.layer_groups(views, 1 << 30)] == [18]
    joined = analysis.layer_groups(views, 1, min_layers=4)  # joined up to 4 layers
    assert [len(g) for g in joined] == [4, 4, 4, 6]  # the short tail joins the group before
    assert [len(g) for g in analysis.layer_groups(views, 1, min_layers=99)] == [18]
    assert analysis.layer_groups({}, 1) == []


def test_lazy_reading_overlaps_computing_and_stops_at_a_bad_layer(rng, tmp_path):
    """The next group is read while the current one is computed; a NaN layer is named."""
    import threading

    params = noisy_params(rng)
    params.update({f"Dense_{i}": {"kernel": rng.normal(size=(40, 30))} for i in (1, 2, 3, 4, 5)})
    views = analysis.analyze(params, progress=False).views
    t = lazy_npz(params, tmp_path)
    read, threads = t._read, set()
    t._read = lambda keys: (threads.add(threading.current_thread().name), read(keys))[1]
    analysis.lazy_singular_values(t, views, group_bytes=1)
    assert threads and all(name.startswith("mpjax-read") for name in threads)
    params["Dense_4"]["kernel"][3, 2] = np.nan
    bad = lazy_npz(params, tmp_path / "bad") if (tmp_path / "bad").mkdir() is None else None
    with pytest.raises(ValueError, match="Dense_4"):
        analysis.lazy_singular_values(bad, views, group_bytes=1)


def test_analyze_to_dir_without_plots_writes_tables_only(rng, tmp_path):
    analysis.analyze_to_dir(noisy_params(rng), tmp_path / "r", plots=False, progress=False)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["analysis.csv", "analysis.json"]
