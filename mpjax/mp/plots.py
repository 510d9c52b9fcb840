"""Figures for spectral reports (matplotlib, Agg backend: files only, no display).

Histograms are of the eigenvalues ``lambda_i = s_i^2 / d_in`` (the fit scale of
:mod:`mpjax.mp.fits`) with the fitted MP density ``pdf(x; y, sigma2)`` and the edge ``lambda_plus``.
"""

from __future__ import annotations

import math
import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mpjax.mp.fits import MPFit  # noqa: E402
from mpjax.mp.law import pdf  # noqa: E402

#: Eigenvalues beyond this multiple of ``lambda_plus`` are left out of a panel's x-range.
X_RANGE = 1.5


def esd_panel(
    ax: Any, s: np.ndarray, fit: MPFit, bins: int | None = None, title: str = ""
) -> None:
    """One ESD panel: histogram of ``s^2 / d_in``, fitted MP density, edge line.

    ``bins=None`` picks about six eigenvalues per bin (10 to 60 bins).

    Spikes far beyond the edge are not drawn (so the bulk stays readable); their count is
    written in the legend.
    """
    d_out, d_in = fit.shape
    p, n = min(d_out, d_in), max(d_out, d_in)
    ev = np.asarray(s, dtype=np.float64) ** 2 / max(d_in, 1)
    hi = X_RANGE * fit.lambda_plus if fit.lambda_plus > 0 else float(ev.max(initial=1.0))
    shown = ev[ev <= hi]
    if shown.size:
        bins = bins or int(np.clip(shown.size // 6, 10, 60))
        ax.hist(shown, bins=bins, density=True, color="0.75")
    if fit.sigma2 > 0 and p:
        x = np.linspace(0.0, hi, 400)
        ax.plot(x, pdf(x, p / n, fit.sigma2), color="C0", lw=1.2, label="MP fit")
        ax.axvline(
            fit.lambda_plus,
            color="C3",
            lw=1,
            ls="--",
            label=f"edge ({fit.n_spikes} spike{'s' if fit.n_spikes != 1 else ''})",
        )
    ax.set_title(title, fontsize=7)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=5, loc="upper right")


_ABBREV = (
    ("encoderblock_", "blk"),
    ("MultiHeadDotProductAttention_", "attn"),
    ("MlpBlock_", "mlp"),
    ("Transformer/", ""),
)


def _short(path: str, keep: int = 3, width: int = 30) -> str:
    """A panel label: the last ``keep`` path parts, big_vision names abbreviated."""
    parts = path.split("/")
    if parts[-1] in ("kernel", "weight"):
        parts = parts[:-1]
    label = "/".join(parts[-keep:])
    for long, short in _ABBREV:
        label = label.replace(long, short)
    return label if len(label) <= width else "..." + label[-(width - 3) :]


def esd_grid(report: Any, path: str | os.PathLike, max_panels: int = 48, ncols: int = 6) -> int:
    """Grid of :func:`esd_panel` for the first ``max_panels`` layers of an analysis.

    Args:
      report: an :class:`mpjax.mp.analysis.Analysis`.
      path: output PNG file.
      max_panels: cap on panels (the figure title says when layers were left out).
      ncols: panels per row.

    Returns:
      the number of panels drawn.
    """
    paths = list(report.fits)[:max_panels]
    nrows = max(1, math.ceil(len(paths) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.0 * nrows), squeeze=False)
    for ax, p in zip(axes.ravel(), paths, strict=False):
        f = report.fits[p]
        esd_panel(ax, report.spectra[p], f, title=f"{_short(p)} {f.shape[0]}x{f.shape[1]}")
    for ax in axes.ravel()[len(paths) :]:
        ax.axis("off")
    total = len(report.fits)
    note = f" (first {len(paths)} of {total} layers)" if total > len(paths) else ""
    fig.suptitle(f"ESD of s^2/d_in with fitted MP law and edge{note}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return len(paths)


def edges_chart(report: Any, path: str | os.PathLike) -> None:
    """Per-layer bar charts of ``sigma_plus`` and bulk fraction (status != ok in grey)."""
    rows = report.rows
    idx = np.arange(len(rows))
    colors = ["C0" if r["status"] == "ok" else "0.6" for r in rows]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(max(6.0, 0.12 * len(rows) + 2), 5), sharex=True)
    a1.bar(idx, [r["sigma_plus"] for r in rows], color=colors)
    a1.set_ylabel("sigma_plus (singular-value scale)")
    a2.bar(idx, [r["bulk_fraction"] for r in rows], color=colors)
    a2.set_ylabel("bulk fraction")
    a2.set_ylim(0, 1.05)
    step = max(1, len(rows) // 40)
    a2.set_xticks(idx[::step])
    a2.set_xticklabels([_short(r["path"], 2) for r in rows][::step], rotation=90, fontsize=5)
    a1.set_title("MP bulk edge and bulk fraction per layer (grey: status != ok)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
