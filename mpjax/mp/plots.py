"""Figures for spectral reports (matplotlib, Agg backend: files only, no display).

Histograms are of the eigenvalues ``lambda_i = s_i^2 / d_in`` (the fit scale of
:mod:`mpjax.mp.fits`) with the fitted MP density ``pdf(x; y, sigma2)`` and the edge ``lambda_plus``.

Layers are named by :func:`layer_labels`: the block index first (``b3``), then the layer
inside the block (``attn/query``, ``mlp/Dense_0``), e.g. ``b3 mlp/Dense_0``. Labels are
unique within a report, so a grid of 12 or 24 blocks reads without the full paths.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullLocator  # noqa: E402

from mpjax.mp.fits import MPFit  # noqa: E402
from mpjax.mp.law import pdf  # noqa: E402

#: Eigenvalues beyond this multiple of ``lambda_plus`` are left out of a panel's x-range.
X_RANGE = 1.5
#: Longest label :func:`layer_labels` makes before it shortens the part after the block index.
LABEL_WIDTH = 24
#: Size of one :func:`esd_grid` panel in inches (width, height) and the PNGs' resolution.
PANEL_INCHES = (2.6, 2.0)
DPI = 80
#: Points on which a panel draws the MP density.
CURVE_POINTS = 160

# Parameter names, wrappers that every layer of a model shares, and long module names.
_LEAVES = ("kernel", "weight")
_WRAPPERS = ("params", "Transformer", "model", "module", "vit", "encoder", "blocks", "layers")
_ABBREV = (
    (re.compile(r"^MultiHeadDotProductAttention(_\d+)?$"), "attn"),
    (re.compile(r"^MlpBlock(_\d+)?$"), "mlp"),
    (re.compile(r"^attention$"), "attn"),
)
# A path part that opens a block: ``encoderblock_3``, ``block3``, ``layers_3`` (or the
# number that follows ``blocks`` / ``layer`` / ``h`` in ``blocks.3``, ``layer.3``, ``h.3``).
_BLOCK_PART = re.compile(r"^(?:encoder_?block|block|blocks|layer|layers|resblocks)_?(\d+)$", re.I)
_BLOCK_WORDS = ("blocks", "block", "layer", "layers", "h", "resblocks")


def _split_block(path: str) -> tuple[int | None, list[str]]:
    """``(block index or None, the other path parts)`` with the leaf name dropped."""
    parts = re.split(r"[/.]", path)
    if len(parts) > 1 and parts[-1] in _LEAVES:
        parts = parts[:-1]
    for i, part in enumerate(parts):
        m = _BLOCK_PART.match(part)
        if m:
            return int(m.group(1)), parts[i + 1 :]
        if part.isdigit() and i and parts[i - 1].lower() in _BLOCK_WORDS:
            return int(part), parts[i + 1 :]
    return None, parts


def _role(parts: list[str]) -> str:
    """The layer inside its block, with wrappers dropped and long names abbreviated."""
    out: list[str] = []
    for part in parts:
        if part in _WRAPPERS:
            continue
        for pattern, short in _ABBREV:
            if pattern.match(part):
                part = short
                break
        if not out or out[-1] != part:  # HF repeats "attention.attention"
            out.append(part)
    return "/".join(out) or "/".join(parts)


def layer_labels(paths: list[str]) -> list[str]:
    """Short, unique labels of layer paths that keep the block index.

    ``Transformer/encoderblock_3/MlpBlock_0/Dense_0/kernel`` -> ``b3 mlp/Dense_0``;
    ``blocks.3.attn.qkv.weight`` -> ``b3 attn/qkv``; layers outside blocks keep their name
    (``embedding``, ``head``). A label longer than :data:`LABEL_WIDTH` is cut after the block
    index, never before it; labels that would repeat fall back to the full path.

    Examples:
      >>> layer_labels(["Transformer/encoderblock_10/MlpBlock_0/Dense_1/kernel", "head/kernel"])
      ['b10 mlp/Dense_1', 'head']
    """
    labels = []
    for path in paths:
        block, rest = _split_block(path)
        role = _role(rest)
        head = "" if block is None else f"b{block} "
        room = max(LABEL_WIDTH - len(head), 8)
        if len(role) > room:
            role = "..." + role[-(room - 3) :]
        labels.append(head + role)
    seen: dict[str, int] = {}
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
    return [lab if seen[lab] == 1 else path for lab, path in zip(labels, paths, strict=True)]


def esd_panel(
    ax: Any,
    s: np.ndarray,
    fit: MPFit,
    bins: int | None = None,
    title: str = "",
    spike_fit: MPFit | None = None,
    legend: bool = True,
) -> None:
    """One ESD panel: histogram of ``s^2 / d_in``, fitted MP density, edge line(s).

    ``bins=None`` picks about six eigenvalues per bin (10 to 60 bins). Spikes far beyond the
    edge are not drawn (so the bulk stays readable); their count is written in the panel:
    above ``spike_fit``'s edge (drawn dotted) when it is given, else above ``fit``'s edge.
    The histogram is counted with numpy and drawn as one outline (``ax.stairs``), the
    density on :data:`CURVE_POINTS` points: a few artists per panel, so a grid of 48
    panels draws in about a second.

    Args:
      ax: the matplotlib axes.
      s: the layer's singular values.
      fit: the MP fit whose density and edge (dashed) are drawn.
      bins: histogram bins.
      title: panel title.
      spike_fit: the spike detector's fit (e.g. ``Analysis.spike_fits[path]``), optional.
      legend: draw a legend in the panel (a grid draws one legend for the figure instead).
    """
    d_out, d_in = fit.shape
    p, n = min(d_out, d_in), max(d_out, d_in)
    ev = np.asarray(s, dtype=np.float64) ** 2 / max(d_in, 1)
    lam = fit.lambda_plus if np.isfinite(fit.lambda_plus) else 0.0
    hi = X_RANGE * lam if lam > 0 else float(np.nanmax(ev, initial=1.0))
    shown = ev[ev <= hi]
    if shown.size:
        counts, edges = np.histogram(shown, bins=bins or int(np.clip(shown.size // 6, 10, 60)),
                                     density=True)  # fmt: skip
        ax.stairs(counts, edges, fill=True, color="0.75", lw=0, antialiased=False)
    if fit.sigma2 > 0 and p:
        x = np.linspace(0.0, hi, CURVE_POINTS)
        ax.plot(x, pdf(x, p / n, fit.sigma2), color="C0", lw=1.2, label="MP fit")
        ax.axvline(lam, color="C3", lw=1, ls="--", label=f"{fit.method} edge")
    counted = spike_fit if spike_fit is not None else fit
    if spike_fit is not None and spike_fit.lambda_plus > 0:
        ax.axvline(spike_fit.lambda_plus, color="C2", lw=1.2, ls=":",
                   label=f"{spike_fit.method} edge (spikes)")  # fmt: skip
    if counted.n_spikes >= 0:
        n_s = counted.n_spikes
        ax.text(0.97, 0.95, f"{n_s} spike{'s' if n_s != 1 else ''}", transform=ax.transAxes,
                ha="right", va="top", fontsize=7)  # fmt: skip
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=6)
    if legend:
        ax.legend(fontsize=8, loc="center right")


def grid_axes(n: int, ncols: int = 6) -> tuple[Any, np.ndarray]:
    """A figure of ``n`` panels in rows of ``ncols``, laid out by fixed margins in inches.

    Fixed margins replace ``tight_layout`` (which measures every tick label of every panel
    by drawing the figure once more). The x axis keeps three ticks; the y axis (a
    density) none, which is most of the drawing time of a panel saved.
    """
    nrows = max(1, math.ceil(n / ncols))
    width, height = PANEL_INCHES[0] * ncols, PANEL_INCHES[1] * nrows + 0.9
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=0.15 / width, right=1 - 0.15 / width, bottom=0.55 / height,
                        top=1 - 0.5 / height, wspace=0.12, hspace=0.55)  # fmt: skip
    for ax in axes.ravel():
        ax.xaxis.set_major_locator(MaxNLocator(3))
        ax.yaxis.set_major_locator(NullLocator())
    return fig, axes


class GridPlan(NamedTuple):
    """An :func:`esd_grid` figure being drawn: the layers shown, their titles, the axes."""

    paths: list[str]  # the layers shown, in panel order
    labels: dict[str, str]  # their :func:`layer_labels`
    total: int  # the report's layer count
    fig: Any
    axes: np.ndarray


def esd_grid_start(paths: list[str], max_panels: int = 48, ncols: int = 6) -> GridPlan:
    """Lay out the grid of a report whose layers are ``paths`` (model order).

    Nothing here depends on the spectra, so the axes can be made while they are computed
    (:class:`mpjax.cli.plot_worker.PlotWorker` does).
    """
    shown = list(paths)[:max_panels]
    labels = dict(zip(shown, layer_labels(list(paths))[: len(shown)], strict=True))
    fig, axes = grid_axes(len(shown), ncols)
    return GridPlan(shown, labels, len(paths), fig, axes)


def esd_grid_panel(
    plan: GridPlan, path: str, s: np.ndarray, fit: MPFit, spike_fit: MPFit | None = None
) -> None:
    """Draw the panel of layer ``path`` (one of ``plan.paths``) into its axes."""
    ax = plan.axes.ravel()[plan.paths.index(path)]
    title = f"{plan.labels[path]}  {fit.shape[0]}x{fit.shape[1]}"
    esd_panel(ax, s, fit, title=title, spike_fit=spike_fit, legend=False)


def esd_grid_finish(plan: GridPlan, path: str | os.PathLike) -> int:
    """Title, legend and save the grid to ``path``; returns the number of panels."""
    fig, axes = plan.fig, plan.axes
    for ax in axes.ravel()[len(plan.paths) :]:
        ax.axis("off")
    shown, total = len(plan.paths), plan.total
    note = f" (first {shown} of {total} layers)" if total > shown else ""
    fig.suptitle(f"ESD of s^2/d_in with fitted MP law and edges{note}", fontsize=11,
                 y=1 - 0.08 / fig.get_figheight(), va="top")  # fmt: skip
    handles, names = axes.ravel()[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="lower center", fontsize=9, ncols=len(handles),
                   frameon=False)  # fmt: skip
    fig.savefig(path, dpi=DPI, pil_kwargs={"compress_level": 1})
    plt.close(fig)
    return len(plan.paths)


def esd_grid(report: Any, path: str | os.PathLike, max_panels: int = 48, ncols: int = 6) -> int:
    """Grid of :func:`esd_panel` for the first ``max_panels`` layers of an analysis.

    Panel titles are :func:`layer_labels` (block index first) with the matrix shape; one
    legend for the figure. Drawn at :data:`DPI` dots per inch, in three steps that can run
    at different times: :func:`esd_grid_start` (the axes), :func:`esd_grid_panel` (one per
    layer, as its fit is known) and :func:`esd_grid_finish` (title, legend, file).

    Args:
      report: an :class:`mpjax.mp.analysis.Analysis`.
      path: output PNG file.
      max_panels: cap on panels (the figure title says when layers were left out).
      ncols: panels per row.

    Returns:
      the number of panels drawn.
    """
    plan = esd_grid_start(list(report.fits), max_panels, ncols)
    spike_fits = getattr(report, "spike_fits", {}) or {}
    for p in plan.paths:
        esd_grid_panel(plan, p, report.spectra[p], report.fits[p], spike_fits.get(p))
    return esd_grid_finish(plan, path)


def edges_chart(report: Any, path: str | os.PathLike) -> None:
    """Per-layer bars of ``sigma_plus`` and bulk fraction, grouped by block.

    Bars are in model order and coloured by the layer's role in its block (``attn/query``,
    ``mlp/Dense_0``, ...; one legend entry per role); the x axis names the block index of
    every group. Models without numbered blocks get one tick label per layer. Layers whose
    status is not ``ok`` are hatched; undefined numbers (``None``) leave a gap.
    """
    rows = report.rows
    paths = [r["path"] for r in rows]
    split = [_split_block(p) for p in paths]
    roles = [_role(rest) for _, rest in split]
    blocks = [b for b, _ in split]
    idx = np.arange(len(rows))
    kinds = list(dict.fromkeys(roles))
    by_role = len(kinds) <= 10 and any(b is not None for b in blocks)
    cmap = plt.get_cmap("tab10")
    colors = [cmap(kinds.index(r)) if by_role else "C0" for r in roles]
    width = min(max(8.0, 0.09 * len(rows) + 3.0), 30.0)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(width, 6.0), sharex=True)
    for ax, key in ((a1, "sigma_plus"), (a2, "bulk_fraction")):
        values = [np.nan if r[key] is None else r[key] for r in rows]
        bars = ax.bar(idx, values, color=colors, width=0.85)
        for bar, r in zip(bars, rows, strict=True):
            if r["status"] != "ok":
                bar.set_hatch("///")
                bar.set_alpha(0.45)
    a1.set_ylabel("edge sigma_plus", fontsize=9)
    a2.set_ylabel("bulk fraction", fontsize=9)
    a2.set_ylim(0, 1.05)
    fig.align_ylabels((a1, a2))
    _block_axis(a2, blocks, layer_labels(paths))
    for ax in (a1, a2):
        for i in range(1, len(rows)):
            if blocks[i] != blocks[i - 1]:
                ax.axvline(i - 0.5, color="0.85", lw=0.8, zorder=0)
    handles = [Patch(color=cmap(kinds.index(k)), label=k) for k in kinds] if by_role else []
    if any(r["status"] != "ok" for r in rows):
        handles.append(Patch(facecolor="white", edgecolor="0.3", hatch="///", label="status != ok"))
    if handles:
        a1.legend(handles=handles, fontsize=8, ncols=min(len(handles), 7), loc="lower left",
                  bbox_to_anchor=(0, 1.02), frameon=False)  # fmt: skip
    method = getattr(report, "config", {}).get("method", "bema")
    fig.suptitle(f"MP bulk edge ({method}) and bulk fraction per layer", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _block_axis(ax: Any, blocks: list[int | None], labels: list[str]) -> None:
    """x ticks: the block index under each block's bars, the label of any other layer."""
    ticks, names = [], []
    i = 0
    while i < len(blocks):
        j = i
        while j + 1 < len(blocks) and blocks[j + 1] == blocks[i]:
            j += 1
        if blocks[i] is None:
            ticks += list(range(i, j + 1))
            names += labels[i : j + 1]
        else:
            ticks.append((i + j) / 2)
            names.append(str(blocks[i]))
        i = j + 1
    ax.set_xticks(ticks)
    for text in ax.set_xticklabels(names, fontsize=8):
        text.set_rotation(90 if len(text.get_text()) > 3 else 0)
    if any(b is not None for b in blocks):
        ax.set_xlabel("block", fontsize=9)
    ax.set_xlim(-0.7, len(blocks) - 0.3)
