"""Per-layer spectral report of a parameter tree: MP fit, edge, spikes, tail exponent.

One row per weight matrix (matrix view ``(d_out, d_in)``, see :mod:`mpjax.tree`):
``path, shape, d_out, d_in, sigma2, sigma_plus, fit_error, bulk_fraction, n_spikes,
alpha_hill, stable_rank, status, n_above_edge, spike_edge``. Conventions follow
:mod:`mpjax.mp.fits`: ``sigma2`` is the MP scale of ``lambda = s^2 / d_in``; ``sigma_plus`` is
the bulk edge of the ``method`` fit (BEMA, ``beta = 0.8`` by default: the edge budgets use) on
the singular-value scale.

Two spike counts (docs/method/mp-law.md, "Counting spikes"):

* ``n_spikes``: singular values above ``spike_edge``, the edge of a detector with a
  controlled false-spike rate (``spike_method="calibrated"``: on a pure-noise layer
  ``P(n_spikes >= 1) ~ false_spike_rate``, 0.05 by default). This is the spike count.
* ``n_above_edge``: singular values above ``sigma_plus`` (the paper's count; with BEMA at
  ``beta = 0.8`` pure noise shows about one such value per layer).

The table never holds NaN: degenerate layers carry a ``status``; ``alpha_hill`` may be
``None`` (empty in CSV, ``null`` in JSON), and so may every number of a layer whose spectrum
is not finite (status ``nonfinite``).

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
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mpjax import tree
from mpjax.lazy import LazyTree
from mpjax.mp import spectra
from mpjax.mp.fits import MPFit, check_options, fit, hill_alpha, stable_rank

PyTree = Any
#: Float32 bytes of the weight matrices a :class:`~mpjax.lazy.LazyTree` analysis reads at once
#: (two groups are in memory: one computed, the next being read). Small enough that reading
#: the first group, which nothing overlaps, is short; large enough to hold a layer per core.
GROUP_BYTES = 1 << 25

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
    "n_above_edge",
    "spike_edge",
)
#: Columns that hold ``None`` when a layer's number is undefined (CSV: empty cell).
_NULLABLE = (
    "sigma2",
    "sigma_plus",
    "fit_error",
    "bulk_fraction",
    "n_spikes",
    "alpha_hill",
    "n_above_edge",
    "spike_edge",
)


@dataclasses.dataclass(frozen=True)
class Analysis:
    """Result of :func:`analyze`.

    Attributes:
      rows: one dict per layer with the keys :data:`COLUMNS` (tree order).
      spectra: ``{path: singular values}`` (descending numpy arrays), kept for plots.
      fits: ``{path: MPFit}`` of the ``method`` fit (``sigma_plus``, budgets).
      spike_fits: ``{path: MPFit}`` of the spike detector (``spike_edge``, ``n_spikes``).
      views: ``{path: tree.LayerView}``.
      config: the fit options used.
    """

    rows: list[dict[str, Any]]
    spectra: dict[str, np.ndarray]
    fits: dict[str, MPFit]
    views: dict[str, tree.LayerView]
    config: dict[str, Any]
    spike_fits: dict[str, MPFit] = dataclasses.field(default_factory=dict)

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
                cells = {k: "" if r.get(k) is None else r[k] for k in _NULLABLE}
                writer.writerow({**r, **cells, "shape": "x".join(str(d) for d in r["shape"])})

    def to_json(self, path: str | os.PathLike) -> None:
        """Write ``{"config": ..., "layers": rows}`` as strict JSON (no NaN allowed)."""
        with open(path, "w") as fh:
            json.dump({"config": self.config, "layers": self.rows}, fh, indent=1, allow_nan=False)


def _number(x: float | int | None) -> float | int | None:
    """``None`` for NaN/Inf floats and the ``UNCOUNTED`` count (the table holds no NaN)."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return None
    return None if isinstance(x, int) and x < 0 else x


def _row(
    view: tree.LayerView, s: np.ndarray, f: MPFit, spikes: MPFit, hill_k: int
) -> dict[str, Any]:
    row = {
        "path": view.path,
        "shape": [view.d_out, view.d_in],
        "d_out": view.d_out,
        "d_in": view.d_in,
        "sigma2": f.sigma2,
        "sigma_plus": f.edge,
        "fit_error": f.fit_error,
        "bulk_fraction": f.bulk_fraction,
        "n_spikes": spikes.n_spikes,
        "alpha_hill": hill_alpha(s, hill_k),
        "stable_rank": stable_rank(s),
        "status": f.status,
        "n_above_edge": f.n_spikes,
        "spike_edge": spikes.edge,
    }
    return {k: _number(v) if k in _NULLABLE else v for k, v in row.items()}


def layer_groups(
    views: Mapping[str, tree.LayerView],
    group_bytes: int,
    min_layers: int = 1,
    order: Sequence[str] | None = None,
) -> list[list[str]]:
    """Paths cut into groups read together: consecutive runs of ``order``.

    ``order`` (default: the order of ``views``) is the order the source stores or draws its
    leaves in (paths not in ``views`` are skipped), so reading the groups one after the
    other reads the source front to back, each leaf once. A group takes layers while their
    float32 bytes stay within ``group_bytes`` (at least one layer, and at least
    ``min(min_layers, len(views))`` layers: the host spectra engine runs one matrix per
    core, so a group of one matrix per core keeps every core busy); a short last group
    joins the one before. The digits of a spectrum do not depend on the grouping.
    """
    paths = [p for p in (views if order is None else order) if p in views]
    least = min(min_layers, len(paths))
    groups: list[list[str]] = []
    size = 0
    for path in paths:
        nbytes = 4 * views[path].d_out * views[path].d_in
        if groups and (len(groups[-1]) < least or size + nbytes <= group_bytes):
            groups[-1].append(path)
            size += nbytes
        else:
            groups.append([path])
            size = nbytes
    if len(groups) > 1 and len(groups[-1]) < least:
        tail = groups.pop()
        groups[-1] += tail
    return groups


def _load_checked(
    params: LazyTree, paths: list[str], views: Mapping[str, tree.LayerView]
) -> dict[str, np.ndarray]:
    """The leaves of ``paths``, refused if one holds NaN/Inf (named in the message)."""
    leaves = params.load(paths)  # flat {path: leaf}: tree.flatten keeps the paths
    tree.check_finite(leaves, {p: views[p] for p in paths})
    return leaves


def lazy_singular_values(
    params: LazyTree,
    views: Mapping[str, tree.LayerView],
    method: str = "gram",
    dtype: Any = None,
    progress: bool = False,
    group_bytes: int | None = None,
    then: Callable[[dict[str, np.ndarray]], None] | None = None,
) -> dict[str, np.ndarray]:
    """:func:`mpjax.mp.spectra.singular_values` of a :class:`~mpjax.lazy.LazyTree`, reading
    one :func:`layer_groups` group at a time, in the source's own order.

    A reader thread loads (reads, decodes or draws) the next group while the spectra of
    the current one are computed, so reading and computing overlap; peak memory is two
    groups (at most ``2 * group_bytes`` plus one layer per core), not the model. Values
    equal those of the whole tree in memory (same kernels, same dtypes: half precision is
    widened to float32 either way; ``group_bytes`` defaults to :data:`GROUP_BYTES`).
    ``then(part)``, if given, is called with each group's
    ``{path: s}`` on one more thread, in group order, while the next groups are computed
    (:func:`analyze` fits the MP law there); its errors are raised here.

    Raises:
      ValueError: a weight holds NaN or Inf (named), or the file cannot deliver it.
    """
    out: dict[str, np.ndarray] = {}
    group_bytes = GROUP_BYTES if group_bytes is None else group_bytes
    groups = layer_groups(views, group_bytes, min_layers=spectra.cores(), order=params.paths)
    bar = tqdm(total=len(views), desc="spectra", unit="layer", disable=None if progress else True)
    followers = []
    with ThreadPoolExecutor(1, "mpjax-read") as reader, ThreadPoolExecutor(1, "mpjax-then") as after:
        pending = reader.submit(_load_checked, params, groups[0], views) if groups else None
        for i, paths in enumerate(groups):
            leaves = pending.result()
            if i + 1 < len(groups):
                pending = reader.submit(_load_checked, params, groups[i + 1], views)
            part = spectra.singular_values(leaves, {p: views[p] for p in paths}, method, dtype)
            del leaves
            out.update(part)
            if then is not None:
                followers.append(after.submit(then, part))
            bar.update(len(paths))
        for follower in followers:
            follower.result()
    bar.close()
    return {p: out[p] for p in views}


def _selected(
    params: PyTree | LazyTree, include: tree.Selector, exclude: tree.Selector
) -> dict[str, tree.LayerView]:
    """The selected views in model order (``block_2`` before ``block_10``); nothing is read."""
    shapes = params.abstract if isinstance(params, LazyTree) else params
    selected = tree.select(shapes, include=include, exclude=exclude)
    if not selected:
        raise ValueError(tree.empty_selection_message(shapes, include, exclude))
    return {p: selected[p] for p in sorted(selected, key=tree.natural_key)}


def analyze(
    params: PyTree | LazyTree,
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
    spike_method: str = "calibrated",
    on_fitted: Callable[[dict[str, tuple[np.ndarray, MPFit, MPFit]]], None] | None = None,
) -> Analysis:
    """Spectra and MP fits of every selected weight matrix of ``params``.

    Args:
      params: parameter pytree (Linen dict, ``nnx.State``, or torch-layout flat dict), or a
        :class:`~mpjax.lazy.LazyTree` (read one group of layers at a time: see
        :func:`lazy_singular_values`).
      include, exclude: path globs or predicates, as in :func:`mpjax.tree.select`.
      method, alpha, beta, tw_form, false_spike_rate: passed to :func:`mpjax.mp.fits.fit`;
        ``method`` gives ``sigma_plus`` and ``n_above_edge``.
      spectra_method: ``"gram"`` or ``"svd"`` (see :mod:`mpjax.mp.spectra`).
      progress: tqdm bar over layers (shown on a terminal only).
      hill_k: tail size of the Hill exponent.
      dtype: spectra compute dtype (``None``, ``np.float32`` or ``np.float64``).
      spike_method: the fit whose edge counts ``n_spikes``: ``"calibrated"`` (false-spike
        rate ``false_spike_rate`` per pure-noise layer), ``"gavish_donoho"``, or ``"bema"``
        (then ``n_spikes == n_above_edge`` for ``method="bema"``).
      on_fitted: called with ``{path: (s, fit, spike_fit)}`` of each group of layers as
        soon as its fits are done (for a :class:`~mpjax.lazy.LazyTree`, on a helper thread
        while the next groups are computed), e.g. to draw them.

    Returns:
      :class:`Analysis` with one row per layer.

    Raises:
      ValueError: a selected weight holds NaN/Inf (the message names its path), no layer
        matches the selection, or an option is invalid.
    """
    views = _selected(params, include, exclude)
    check_options(method, alpha, beta, tw_form, false_spike_rate)  # before the costly part
    check_options(spike_method, alpha, beta, tw_form, false_spike_rate)
    layer_fits: dict[str, MPFit] = {}
    spike_fits: dict[str, MPFit] = {}

    def fit_layers(part: Mapping[str, np.ndarray]) -> None:
        for path, s in part.items():
            shape = views[path].shape
            layer_fits[path] = fit(s, shape, method, alpha, beta, tw_form, false_spike_rate)
            spike_fits[path] = (
                layer_fits[path]
                if spike_method == method
                else fit(s, shape, spike_method, alpha, beta, tw_form, false_spike_rate)
            )
        if on_fitted is not None:
            on_fitted({p: (s, layer_fits[p], spike_fits[p]) for p, s in part.items()})

    if isinstance(params, LazyTree):  # a group's fits run while the next group's spectra do
        svals = lazy_singular_values(params, views, spectra_method, dtype, progress,
                                     then=fit_layers)  # fmt: skip
    else:
        tree.check_finite(params, views)
        svals = spectra.singular_values(params, views, spectra_method, dtype, progress)
        fit_layers(svals)
    layer_fits = {p: layer_fits[p] for p in views}
    spike_fits = {p: spike_fits[p] for p in views}
    rows = [_row(v, svals[p], layer_fits[p], spike_fits[p], hill_k) for p, v in views.items()]
    config = {
        "method": method,
        "alpha": alpha,
        "beta": beta,
        "tw_form": tw_form,
        "false_spike_rate": false_spike_rate,
        "spectra_method": spectra_method,
        "hill_k": hill_k,
        "spike_method": spike_method,
    }
    return Analysis(rows, svals, layer_fits, dict(views), config, spike_fits)


def analyze_to_dir(
    params: PyTree | LazyTree,
    out_dir: str | os.PathLike,
    max_panels: int = 48,
    plots: bool = True,
    plot_worker: Any = None,
    **kw: Any,
) -> Analysis:
    """:func:`analyze` and write ``analysis.csv``, ``analysis.json`` and, unless
    ``plots=False``, ``esd_grid.png`` (ESD histogram, fitted MP density and edge per layer;
    first ``max_panels`` layers) and ``edges.png`` (per-layer ``sigma_plus`` and bulk
    fraction) into ``out_dir``.

    ``plot_worker`` (a started :class:`mpjax.cli.plot_worker.PlotWorker`, optional) draws
    ``esd_grid.png`` in its own process: it lays the grid out before the spectra are
    computed, draws each panel as its fit is done and saves the figure while this process
    draws ``edges.png``. If it fails, the grid is
    drawn here (a one-line note on stderr says why); the files are the same either way.
    """
    worker = plot_worker if plots else None
    if worker is not None:
        worker.layout(list(_selected(params, kw.get("include"), kw.get("exclude"))), max_panels)
    report = analyze(params, on_fitted=worker.panels if worker is not None else None, **kw)
    os.makedirs(out_dir, exist_ok=True)
    report.to_csv(os.path.join(out_dir, "analysis.csv"))
    report.to_json(os.path.join(out_dir, "analysis.json"))
    if plots:
        grid = os.path.join(out_dir, "esd_grid.png")
        if worker is not None:
            worker.finish(grid)
        from mpjax.mp import plots as draw  # matplotlib only when a report is drawn

        draw.edges_chart(report, os.path.join(out_dir, "edges.png"))
        if worker is None or worker.wait() is None:
            if worker is not None:
                print(f"plot worker: {worker.error}; drawing esd_grid.png here",
                      file=sys.stderr)  # fmt: skip
            draw.esd_grid(report, grid, max_panels=max_panels)
    return report


def summary_lines(report: Analysis) -> list[str]:
    """A few human-readable lines: layer count, statuses, spikes, MP-like share."""
    statuses: dict[str, int] = {}
    for r in report.rows:
        key = r["status"].split(":")[0]
        statuses[key] = statuses.get(key, 0) + 1
    spikes = sum(r["n_spikes"] or 0 for r in report.rows)
    above = sum(r["n_above_edge"] or 0 for r in report.rows)
    cfg = report.config
    how = cfg.get("spike_method", "calibrated")
    rate = f", false-spike rate {cfg['false_spike_rate']} per layer" if how == "calibrated" else ""
    return [
        f"{len(report)} layers; status: " + ", ".join(f"{k} {v}" for k, v in statuses.items()),
        f"spikes: {spikes} in total (n_spikes, {how} edge{rate})",
        f"singular values above the {cfg['method']} edge sigma_plus: {above} in total "
        "(n_above_edge; the edge that budgets use)",
    ]
