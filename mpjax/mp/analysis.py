"""Per-layer spectral report of a parameter tree: MP fit, edge, spikes, tail exponent.

One row per weight matrix (matrix view ``(d_out, d_in)``, see :mod:`mpjax.tree`):
``path, shape, d_out, d_in, sigma2, sigma_plus, fit_error, bulk_fraction, n_spikes,
alpha_hill, stable_rank, status``. Conventions follow :mod:`mpjax.mp.fits`: ``sigma2`` is the MP
scale of ``lambda = s^2 / d_in``; ``sigma_plus`` is the bulk edge on the singular-value scale.
The table never holds NaN: degenerate layers carry a ``status`` and ``alpha_hill`` may be
``None`` (empty in CSV, ``null`` in JSON).

Examples:
  >>> import numpy as np
  >>> params = {"Dense_0": {"kernel": np.random.default_rng(0).normal(size=(64, 32))}}
  >>> report = analyze(params, progress=False)
  >>> report.rows[0]["path"], report.rows[0]["shape"], report.rows[0]["status"]
  ('Dense_0/kernel', [32, 64], 'ok')
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from typing import Any

import numpy as np

from mpjax import tree
from mpjax.mp import spectra
from mpjax.mp.fits import MPFit, check_options, fit, hill_alpha, stable_rank

PyTree = Any

#: Column order of :attr:`Analysis.rows`, the CSV and the JSON ``layers`` records.
COLUMNS = (
    "path",
    "shape",
    "d_out",
    "d_in",
    "sigma2",
    "sigma_plus",
    "fit_error",
    "bulk_fraction",
    "n_spikes",
    "alpha_hill",
    "stable_rank",
    "status",
)


@dataclasses.dataclass(frozen=True)
class Analysis:
    """Result of :func:`analyze`.

    Attributes:
      rows: one dict per layer with the keys :data:`COLUMNS` (tree order).
      spectra: ``{path: singular values}`` (descending numpy arrays), kept for plots.
      fits: ``{path: MPFit}``.
      views: ``{path: tree.LayerView}``.
      config: the fit options used.
    """

    rows: list[dict[str, Any]]
    spectra: dict[str, np.ndarray]
    fits: dict[str, MPFit]
    views: dict[str, tree.LayerView]
    config: dict[str, Any]

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, path: str) -> dict[str, Any]:
        """The row of one layer; ``KeyError`` names the path if it is not in the report."""
        for r in self.rows:
            if r["path"] == path:
                return r
        raise KeyError(f"{path}: not in this analysis ({len(self.rows)} layers).")

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write the table as CSV (``shape`` as ``d_outxd_in``, ``None`` as empty)."""
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            for r in self.rows:
                writer.writerow(
                    {
                        **r,
                        "shape": "x".join(str(d) for d in r["shape"]),
                        "alpha_hill": "" if r["alpha_hill"] is None else r["alpha_hill"],
                    }
                )

    def to_json(self, path: str | os.PathLike) -> None:
        """Write ``{"config": ..., "layers": rows}`` as strict JSON (no NaN allowed)."""
        with open(path, "w") as fh:
            json.dump({"config": self.config, "layers": self.rows}, fh, indent=1, allow_nan=False)


def _row(view: tree.LayerView, s: np.ndarray, f: MPFit, hill_k: int) -> dict[str, Any]:
    return {
        "path": view.path,
        "shape": [view.d_out, view.d_in],
        "d_out": view.d_out,
        "d_in": view.d_in,
        "sigma2": f.sigma2,
        "sigma_plus": f.edge,
        "fit_error": f.fit_error,
        "bulk_fraction": f.bulk_fraction,
        "n_spikes": f.n_spikes,
        "alpha_hill": hill_alpha(s, hill_k),
        "stable_rank": stable_rank(s),
        "status": f.status,
    }


def analyze(
    params: PyTree,
    include: tree.Selector = None,
    exclude: tree.Selector = None,
    method: str = "bema",
    alpha: float = 0.25,
    beta: float = 0.8,
    spectra_method: str = "gram",
    progress: bool = True,
    tw_form: str = "paper",
    false_spike_rate: float = 0.05,
    hill_k: int = 20,
    dtype: Any = None,
) -> Analysis:
    """Spectra and MP fits of every selected weight matrix of ``params``.

    Args:
      params: parameter pytree (Linen dict, ``nnx.State``, or torch-layout flat dict).
      include, exclude: path globs or predicates, as in :func:`mpjax.tree.select`.
      method, alpha, beta, tw_form, false_spike_rate: passed to :func:`mpjax.mp.fits.fit`.
      spectra_method: ``"gram"`` or ``"svd"`` (see :mod:`mpjax.mp.spectra`).
      progress: tqdm bar over layers (shown on a terminal only).
      hill_k: tail size of the Hill exponent.
      dtype: spectra compute dtype (``None``, ``np.float32`` or ``np.float64``).

    Returns:
      :class:`Analysis` with one row per layer.

    Raises:
      ValueError: a selected weight holds NaN/Inf (the message names its path), no layer
        matches the selection, or an option is invalid.
    """
    selected = tree.select(params, include=include, exclude=exclude)
    if not selected:
        raise ValueError("params: no weight matrix matches include/exclude; check the globs.")
    views = {p: selected[p] for p in sorted(selected, key=tree.natural_key)}  # model order
    check_options(method, alpha, beta, tw_form, false_spike_rate)  # before the costly part
    tree.check_finite(params, views)
    svals = spectra.singular_values(params, views, spectra_method, dtype, progress)
    layer_fits = {
        path: fit(svals[path], v.shape, method, alpha, beta, tw_form, false_spike_rate)
        for path, v in views.items()
    }
    rows = [_row(v, svals[p], layer_fits[p], hill_k) for p, v in views.items()]
    config = {
        "method": method,
        "alpha": alpha,
        "beta": beta,
        "tw_form": tw_form,
        "false_spike_rate": false_spike_rate,
        "spectra_method": spectra_method,
        "hill_k": hill_k,
    }
    return Analysis(rows, svals, layer_fits, dict(views), config)


def analyze_to_dir(
    params: PyTree, out_dir: str | os.PathLike, max_panels: int = 48, **kw: Any
) -> Analysis:
    """:func:`analyze` and write ``analysis.csv``, ``analysis.json``, ``esd_grid.png``
    (ESD histogram, fitted MP density and edge per layer; first ``max_panels`` layers) and
    ``edges.png`` (per-layer ``sigma_plus`` and bulk fraction) into ``out_dir``."""
    from mpjax.mp import plots  # matplotlib only when a report is drawn

    report = analyze(params, **kw)
    os.makedirs(out_dir, exist_ok=True)
    report.to_csv(os.path.join(out_dir, "analysis.csv"))
    report.to_json(os.path.join(out_dir, "analysis.json"))
    plots.esd_grid(report, os.path.join(out_dir, "esd_grid.png"), max_panels=max_panels)
    plots.edges_chart(report, os.path.join(out_dir, "edges.png"))
    return report


def summary_lines(report: Analysis) -> list[str]:
    """A few human-readable lines: layer count, statuses, spikes, MP-like share."""
    statuses: dict[str, int] = {}
    for r in report.rows:
        key = r["status"].split(":")[0]
        statuses[key] = statuses.get(key, 0) + 1
    spikes = sum(r["n_spikes"] for r in report.rows)
    return [
        f"{len(report)} layers; status: " + ", ".join(f"{k} {v}" for k, v in statuses.items()),
        f"spikes above the MP edge: {spikes} in total",
    ]
