"""Plots of the L2-dynamics study (matplotlib, Agg backend): each returns a ``Figure``.

* :func:`plot_bulk_edge`: the MP bulk edge ``sigma_plus`` per layer vs epoch, one line per arm.
* :func:`plot_esd`: singular-value histograms at a few epochs with the fitted MP density.
* :func:`plot_spikes`: top singular values vs epoch, with their inverse-BBP estimates.
* :func:`plot_energy`: ``||R||_F`` (sqrt of the bulk energy) and ``g* N`` vs epoch.
* :func:`plot_scaling`: ``tau_diag`` at init and trained (or the older ``a_N``, ``tau_N``) vs
  ``N`` with the test accuracy.
* :func:`plot_noise`: accuracy, CE and the L2-regularised loss against the noise level.
"""

from __future__ import annotations

import os
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mpjax import mp  # noqa: E402


def _arm_members(run: Any) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for m, (arm, _) in enumerate(run.config.members):
        groups.setdefault(arm.name, []).append(m)
    return groups


def _per_layer(run: Any, field: str, title: str, transform=lambda a: a, log: bool = False):
    paths = list(run.layers)
    fig, axes = plt.subplots(1, len(paths), figsize=(4 * len(paths), 3.2), squeeze=False)
    for ax, path in zip(axes[0], paths, strict=True):
        vals = transform(run.layers[path][field])
        for arm, idx in _arm_members(run).items():
            ax.plot(run.epochs, np.nanmean(vals[:, idx], axis=1), marker=".", label=arm)
        ax.set_title(path.split("/")[0])
        ax.set_xlabel("epoch")
        if log:
            ax.set_yscale("log")
    axes[0][0].set_ylabel(title)
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_bulk_edge(run: Any):
    """MP bulk edge ``sigma_plus`` (singular-value scale) of every layer vs epoch, per arm."""
    return _per_layer(run, "sigma_plus", "bulk edge sigma_plus")


def plot_energy(run: Any):
    """``||R||_F`` estimated by the bulk energy, and ``g* N = d_out d_in v*``, vs epoch."""
    paths = list(run.layers)
    fig, axes = plt.subplots(2, len(paths), figsize=(4 * len(paths), 5.6), squeeze=False)
    for j, path in enumerate(paths):
        for arm, idx in _arm_members(run).items():
            axes[0][j].plot(
                run.epochs,
                np.sqrt(run.layers[path]["bulk_energy"][:, idx]).mean(1),
                marker=".",
                label=arm,
            )
            axes[1][j].plot(
                run.epochs, run.layers[path]["gN"][:, idx].mean(1), marker=".", label=arm
            )
        axes[0][j].set_title(path.split("/")[0])
        axes[1][j].set_xlabel("epoch")
        axes[1][j].set_yscale("log")
    axes[0][0].set_ylabel("||R||_F (bulk energy)^1/2")
    axes[1][0].set_ylabel("g* N")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def mp_bin_counts(edges: np.ndarray, v: float, shape: tuple[int, int]) -> np.ndarray:
    """Expected counts of the ``p`` singular values of an iid ``N(0, v)`` matrix per bin.

    ``x = s^2 / (v n)`` follows MP(ratio ``y = p/n``, scale 1), so a bin ``[a, b)`` holds
    ``p (F_MP(b^2 / (v n)) - F_MP(a^2 / (v n)))`` values on average.
    """
    p, n = min(shape), max(shape)
    F = mp.cdf(np.asarray(edges, np.float64) ** 2 / (v * n), p / n)
    return p * np.diff(F)


def plot_esd(run: Any, path: str, member: int = 0, epochs: list[int] | None = None):
    """Singular-value histograms (log-spaced bins) at a few epochs with the fitted MP law.

    Log bins keep both a collapsed bulk near 0 and the spikes visible; the red steps are the
    counts the fitted MP law (entry variance ``v*``) expects per bin.
    """
    rec = run.layers[path]
    if epochs is None:
        mid = int(run.epochs[len(run.epochs) // 2])
        epochs = sorted({int(run.epochs[0]), mid, int(run.epochs[-1])})
    shape = (rec["U_top"].shape[2], rec["V_top"].shape[2])
    fig, axes = plt.subplots(1, len(epochs), figsize=(4 * len(epochs), 3.2), squeeze=False)
    for ax, e in zip(axes[0], epochs, strict=True):
        i = int(np.searchsorted(run.epochs, e))
        s, v, edge = rec["s"][i, member], rec["v_star"][i, member], rec["sigma_plus"][i, member]
        top = max(float(s.max()), float(edge)) * 1.2
        low = max(float(s[s > 0].min()) if np.any(s > 0) else top * 1e-6, top * 1e-6) * 0.8
        bins = np.geomspace(low, top, 50)
        ax.hist(s, bins=bins, alpha=0.6, label="singular values")
        if np.isfinite(v) and v > 0:
            ax.stairs(mp_bin_counts(bins, v, shape), bins, color="r", label="fitted MP")
        ax.axvline(edge, color="k", ls="--", lw=1, label="sigma_plus")
        ax.set_xscale("log")
        ax.set_title(f"{path.split('/')[0]} {run.member_names[member]} epoch {e}", fontsize=9)
        ax.set_xlabel("s (log scale)")
    axes[0][0].set_ylabel("count")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_spikes(run: Any, path: str, member: int = 0, k: int = 4):
    """Top-``k`` singular values vs epoch (solid) and inverse-BBP ``sigma_hat`` (dashed)."""
    rec = run.layers[path]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for j in range(min(k, rec["top_s"].shape[-1])):
        (line,) = ax.plot(run.epochs, rec["top_s"][:, member, j], marker=".", label=f"s_{j + 1}")
        ax.plot(run.epochs, rec["sigma_hat"][:, member, j], ls="--", color=line.get_color())
    ax.plot(run.epochs, rec["sigma_plus"][:, member], "k:", label="sigma_plus")
    ax.set_xlabel("epoch")
    ax.set_ylabel("singular value")
    ax.set_title(
        f"{path.split('/')[0]} {run.member_names[member]} (dashed: inverse BBP)", fontsize=9
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_scaling(rows: list[dict[str, Any]]):
    """``tau_diag`` (trained: solid, init: dashed) and the older ``a_N``/``tau_N`` vs ``N``.

    Test accuracy on a twin axis. Rows without ``tau_diag`` (older runs) plot the rest only.
    """
    N = [r["N"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    if "tau_diag" in rows[0]:
        (line,) = ax.plot(N, [r["tau_diag"] for r in rows], "o-", label="tau_diag trained")
        ax.plot(N, [r["tau_diag_init"] for r in rows], "o--", color=line.get_color(),
                label="tau_diag init")  # fmt: skip
    else:
        ax.plot(N, [r["a_N_mean"] for r in rows], "o-", label="a_N (mean)")
        ax.plot(N, [r["tau_N"] for r in rows], "s-", label="tau_N")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N")
    ax2 = ax.twinx()
    ax2.plot(N, [r["test_acc"] for r in rows], "k^:", label="test acc")
    ax2.set_ylabel("test accuracy")
    ax.legend(loc="upper center", fontsize=8)
    fig.tight_layout()
    return fig


def plot_noise(rows: list[dict[str, Any]]):
    """Noise sweep: train/test accuracy (left) and CE / ``J_l2`` (right) against eps."""
    eps = [r["eps"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    for split, style in (("train", "-"), ("test", "--")):
        if f"{split}_acc" in rows[0]:
            a.plot(eps, [r[f"{split}_acc"] for r in rows], style, marker=".", label=split)
            b.plot(eps, [r[f"{split}_ce"] for r in rows], style, marker=".", label=f"{split} CE")
    b.plot(eps, [r["J_l2"] for r in rows], "k-", marker="s", ms=3, label="test CE + l2||W||^2")
    a.set_ylabel("accuracy")
    b.set_ylabel("loss")
    for ax in (a, b):
        ax.set_xlabel(f"eps ({rows[0].get('eps_is', 'variance')})")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save_figure(fig, path: str) -> str:
    """Save as PNG (directories created) and close the figure."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_run_plots(run: Any, directory: str) -> list[str]:
    """All per-run plots as PNGs under ``directory``."""
    first = list(run.layers)[0]
    figs = {
        "bulk_edge": plot_bulk_edge(run),
        "energy": plot_energy(run),
        "esd": plot_esd(run, first, member=len(run.config.members) - 1),
        "spikes": plot_spikes(run, first, member=len(run.config.members) - 1),
    }
    return [save_figure(f, os.path.join(directory, f"{name}.png")) for name, f in figs.items()]
