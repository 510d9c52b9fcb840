"""mpjax.mp.plots: readable labels (block index kept, unique), legends, non-overlapping text."""

import re

import numpy as np
import pytest

from mpjax import tree
from mpjax.models import vit
from mpjax.mp import analysis, plots


def _vit_paths(name: str) -> list[str]:
    views = tree.select(vit.abstract_params(vit.config_for(name)))
    return sorted(views, key=tree.natural_key)


def _block(path: str) -> int | None:
    m = re.search(r"encoderblock_(\d+)", path)
    return int(m.group(1)) if m else None


@pytest.mark.parametrize("name,blocks", [("vit-b16", 12), ("vit-l16", 24)])
def test_labels_unique_short_and_keep_the_block_index(name, blocks):
    paths = _vit_paths(name)
    labels = plots.layer_labels(paths)
    assert len(set(labels)) == len(labels) == len(paths)
    assert max(map(len, labels)) <= plots.LABEL_WIDTH
    for path, label in zip(paths, labels, strict=True):
        b = _block(path)
        if b is not None:
            assert label.startswith(f"b{b} "), (path, label)
    assert {_block(p) for p in paths} - {None} == set(range(blocks))
    # the old labels: "mlp0/Dense_0" twelve times
    assert labels.count("b3 mlp/Dense_0") == 1


def test_labels_of_torch_paths_keep_the_block_index():
    paths = [
        "vit.encoder.layer.10.attention.attention.query.weight",
        "vit.encoder.layer.10.attention.output.dense.weight",
        "blocks.3.mlp.fc1.weight",
        "blocks.11.mlp.fc1.weight",
        "patch_embed.proj.weight",
        "a_very_long_module_name_for_a_stem/with_a_longer_child_module_name/kernel",
    ]
    labels = plots.layer_labels(paths)
    assert labels[:4] == ["b10 attn/query", "b10 attn/output/dense", "b3 mlp/fc1", "b11 mlp/fc1"]
    assert labels[4] == "patch_embed/proj" and len(labels[5]) <= plots.LABEL_WIDTH
    # labels that would repeat fall back to the full path
    assert plots.layer_labels(["x/a/kernel", "y/a/kernel"]) == ["x/a", "y/a"]


def _report(rng):
    """A small analysis whose paths are ViT-L's: blocks 0, 9, 10 and 23 and the head."""
    keep = [p for p in _vit_paths("vit-l16") if _block(p) in (0, 9, 10, 23) or "head" in p]
    params = {}
    for p in keep:
        node = params
        for part in p.split("/")[:-1]:
            node = node.setdefault(part, {})
        node["kernel"] = rng.standard_normal((32, 16)).astype(np.float32)  # Dense view 16x32
    return analysis.analyze(params, progress=False), keep


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions draw, kept open (plt.close is intercepted)."""
    drawn, close = [], plots.plt.close
    monkeypatch.setattr(plots.plt, "close", drawn.append)
    yield drawn
    for fig in drawn:
        close(fig)


def test_esd_grid_titles_keep_layer_number_and_legend_is_readable(rng, tmp_path, figures):
    report, keep = _report(rng)
    assert plots.esd_grid(report, tmp_path / "g.png") == len(keep)
    (fig,) = figures
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == len(set(titles)) == len(keep)
    for path, title in zip(keep, titles, strict=True):
        b = _block(path)
        assert b is None or title.startswith(f"b{b} "), (path, title)
    assert [ax.get_legend() for ax in fig.axes] == [None] * len(fig.axes)  # one figure legend
    (legend,) = fig.legends
    assert min(t.get_fontsize() for t in legend.get_texts()) >= 8
    assert any("calibrated" in t.get_text() for t in legend.get_texts())


def test_edges_chart_names_blocks_and_labels_do_not_overlap(rng, tmp_path, figures):
    report, keep = _report(rng)
    plots.edges_chart(report, tmp_path / "e.png")
    assert (tmp_path / "e.png").stat().st_size > 1000
    (fig,) = figures
    top, bottom = fig.axes
    ticks = [t.get_text() for t in bottom.get_xticklabels()]
    assert ticks == ["0", "9", "10", "23", "head"]  # one tick per block, then other layers
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    y1 = top.yaxis.label.get_window_extent(renderer)
    y2 = bottom.yaxis.label.get_window_extent(renderer)
    assert not y1.overlaps(y2)
    for ax in (top, bottom):  # each y label within its own axes' height
        box, label = ax.get_window_extent(renderer), ax.yaxis.label.get_window_extent(renderer)
        assert box.y0 <= label.y0 and label.y1 <= box.y1
    (legend,) = [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    names = [t.get_text() for t in legend.get_texts()]
    assert names == list(dict.fromkeys(names)) and "mlp/Dense_0" in names
    assert min(t.get_fontsize() for t in legend.get_texts()) >= 8


def test_esd_grid_is_cheap_to_draw(rng, tmp_path, figures):
    """Few artists per panel and no second layout pass: what keeps a 48-panel grid fast."""
    report, keep = _report(rng)
    plots.esd_grid(report, tmp_path / "g.png", ncols=4)
    (fig,) = figures
    assert fig.get_layout_engine() is None  # no tight_layout (it draws the figure twice)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == len(keep) and len(fig.axes) == 4 * -(-len(keep) // 4)
    for ax in panels:
        assert len(ax.patches) == 1  # the histogram is one StepPatch, not one bar per bin
        assert len(ax.lines) <= 3 and len(ax.lines[0].get_xdata()) == plots.CURVE_POINTS
        assert list(ax.get_yticks()) == [] and 2 <= len(ax.get_xticks()) <= 5
    assert sum(not ax.axison for ax in fig.axes) == len(fig.axes) - len(keep)  # blanks hidden


def test_histogram_matches_an_independent_count(rng, tmp_path, figures):
    """The drawn heights are the density histogram of s^2 / d_in below 1.5 lambda_plus."""
    report, keep = _report(rng)
    path = keep[0]
    fig, ax = plots.plt.subplots()
    f = report.fits[path]
    plots.esd_panel(ax, report.spectra[path], f, bins=7)
    ev = report.spectra[path].astype(np.float64) ** 2 / f.shape[1]
    shown = ev[ev <= plots.X_RANGE * f.lambda_plus]
    heights, _ = np.histogram(shown, bins=7)
    (step,) = ax.patches
    data = step.get_data()
    np.testing.assert_allclose(data.values * np.diff(data.edges) * shown.size, heights, rtol=1e-9)
    assert data.edges[0] == shown.min() and data.edges[-1] == shown.max()
    assert ax.get_legend() is not None
    plots.plt.close(fig)


@pytest.mark.parametrize("name", ["vit-b16", "vit-l16"])
def test_report_files_written_for_12_and_24_blocks(tmp_path, name):
    """Both figures of a full-size tree (spectra are cheap stand-ins: MP-like noise)."""
    paths = _vit_paths(name)
    params, rng = {}, np.random.default_rng(0)
    for p in paths:
        node = params
        for part in p.split("/")[:-1]:
            node = node.setdefault(part, {})
        node["kernel"] = rng.standard_normal((24, 12)).astype(np.float32)
    report = analysis.analyze(params, progress=False)
    assert plots.esd_grid(report, tmp_path / "g.png") == min(48, len(paths))
    plots.edges_chart(report, tmp_path / "e.png")
    for png in ("g.png", "e.png"):
        with open(tmp_path / png, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / png).stat().st_size > 20_000
