"""The prune job's result: a typed :class:`PruneReport`, its JSON, markdown and plot.

:func:`write_report` writes into the job's output directory

* ``report.json``: :meth:`PruneReport.to_json` (the fields of :meth:`PruneReport.to_dict`);
* ``report.md``: the quantities of :data:`TABLE_KEYS`, the MACs, and one row per pruned
  layer with its sparsity (and rank, for low rank) and MP fit (``sigma_plus``, bulk
  fraction);
* ``report.png``: per-layer sparsity, test accuracy at each stage, MACs per image.

MACs are in GMAC everywhere (markdown, JSON, plot). :func:`format_table` is the plain-text
summary that ``mpjax prune`` and ``mpjax demo`` print, with or without data.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from mpjax import tree
from mpjax.mp import Analysis

#: Quantities listed in the table of ``report.md``, in this order (when present).
TABLE_KEYS = ("source", "tome_r", "permuted", "sparsity", "global_sparsity", "acc_dense",
              "acc_dense_tome", "acc_pruned", "acc_distilled", "seconds")  # fmt: skip
#: Fields of :class:`PruneReport` left out of :meth:`PruneReport.to_dict` when ``None``.
OPTIONAL_KEYS = ("acc_dense", "acc_dense_tome", "acc_pruned", "acc_distilled", "distill",
                 "lowrank", "budget", "reconstruction")  # fmt: skip
#: The accuracy fields, one per stage of the job.
ACCURACY_KEYS = ("acc_dense", "acc_dense_tome", "acc_pruned", "acc_distilled")


@dataclasses.dataclass(frozen=True)
class MacSummary:
    """MACs per image of a ViT, dense and pruned, counted from the applied masks.

    See :mod:`mpjax.pipeline.macs` and ``docs/method/macs.md``.

    Attributes:
      dense_gmac: the dense model without ToMe, in GMAC.
      pruned_gmac: the pruned model with the job's ToMe ``r``, in GMAC.
      reduction: ``1 - pruned / dense``.
      note: what was counted (which layers run sparse; unstructured and low rank count dense).
      factored_gmac: low rank only: the cost if each matrix ran as its two factor layers.
    """

    dense_gmac: float
    pruned_gmac: float
    reduction: float
    note: str | None = None
    factored_gmac: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"dense_gmac", "pruned_gmac", "reduction"}`` plus ``note`` / ``factored_gmac`` when set."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass(frozen=True, kw_only=True)
class PruneReport:
    """What one prune job did and measured (``report.json`` holds :meth:`to_dict`).

    Attributes:
      source: the model source as given.
      method: the pruning method.
      pattern: ``"unstructured"`` or ``"K:N"``.
      tome_r: ToMe merges per block (on the dense, pruned and distilled model alike).
      permuted: whether an N:M input-channel permutation was baked in.
      sparsity: sparsity of the pruned layers; for low rank the share of their parameters
        removed when each matrix is stored as its two rank-``r`` factors.
      global_sparsity: the same over every reported weight matrix.
      skipped: ``{layer path: why it was left dense}``.
      macs: MACs per image (``None`` when the model is not a ViT).
      acc_dense: test accuracy of the dense model (``None`` without data).
      acc_dense_tome: of the dense model with ToMe (``None`` without data or ToMe).
      acc_pruned: of the pruned model, before distillation (``None`` without data).
      acc_distilled: after distillation (equals ``acc_pruned`` without distillation).
      distill: ``{"steps", "seconds"}`` of the distillation (``None`` without one).
      lowrank: low rank only: ``{"ranks": {path: rank}, "params_removed": float,
        "stored": ...}`` (``None`` for every other method).
      budget: the ``--budget`` of per-layer sparsities (``None``: the method's own).
      reconstruction: with ``--reconstruct``: ``{"mode", "calib_images", "mean_before",
        "mean_after", "layers": [{"path", "before", "after"}]}``, each layer's relative output
        error ``||(W - W_dense) X||_F / ||W_dense X||_F`` on the calibration inputs before
        and after the refit (``None`` without one).
      seconds: wall time of the whole job.
    """

    source: str
    method: str
    pattern: str
    tome_r: int = 0
    permuted: bool = False
    sparsity: float
    global_sparsity: float
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    macs: MacSummary | None = None
    acc_dense: float | None = None
    acc_dense_tome: float | None = None
    acc_pruned: float | None = None
    acc_distilled: float | None = None
    distill: dict[str, Any] | None = None
    lowrank: dict[str, Any] | None = None
    budget: str | None = None
    reconstruction: dict[str, Any] | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The fields in order, ``macs`` as a dict; unset :data:`OPTIONAL_KEYS` left out."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None and field.name in OPTIONAL_KEYS:
                continue
            out[field.name] = value.to_dict() if isinstance(value, MacSummary) else value
        return out

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON (numpy scalars and arrays as numbers and lists)."""
        return json.dumps(_jsonable(self.to_dict()), indent=2)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: getattr(o, "tolist", lambda: str(o))()))


def write_report(
    out: str | Path, report: PruneReport, layers: list[dict[str, Any]], fits: Analysis
) -> None:
    """Write ``report.json``, ``report.md`` and ``report.png`` into ``out``.

    Args:
      out: the job's output directory (it holds ``analysis/esd_grid.png``).
      report: the job's result.
      layers: the per-layer rows of the pruning summary (``path``, ``shape``, ``sparsity``,
        ``pattern``, and ``rank`` for low rank).
      fits: the MP analysis of the dense model.
    """
    out = Path(out)
    (out / "report.json").write_text(report.to_json())
    layers = sorted(layers, key=lambda r: tree.natural_key(r["path"]))
    plot_report(layers, report, out / "report.png")
    fields = report.to_dict()
    lines = [f"# mpjax prune: {report.method} {report.pattern}", ""]
    lines += ["| quantity | value |", "| --- | --- |"]
    lines += [f"| {k} | {_fmt(getattr(report, k))} |" for k in TABLE_KEYS if k in fields]
    if report.macs:
        m = report.macs
        lines.append(f"| MACs per image, dense -> pruned | {_macs_text(m.dense_gmac)} -> "
                     f"{_macs_text(m.pruned_gmac)} ({100 * m.reduction:.2f}% fewer) |")
    notes = [f"MACs: {report.macs.note}."] if report.macs and report.macs.note else []
    if report.lowrank:
        notes.append(f"Low rank: {report.lowrank['stored']}; sparsity is the share of the "
                     "pruned layers' parameters that two rank-r factors per matrix would save.")
    if notes:
        lines += [""] + notes
    ranked = any("rank" in r for r in layers)
    lines += ["", "![report](report.png)", "", "![ESD fits](analysis/esd_grid.png)", "",
              "| layer | shape | sparsity | pattern |" + (" rank |" if ranked else "")
              + " sigma_plus | bulk fraction |",
              "| --- | --- | --- | --- |" + (" --- |" if ranked else "") + " --- | --- |"]  # fmt: skip
    rows = {r["path"]: r for r in fits.rows}
    for r in layers:
        f = rows.get(r["path"], {})
        rank = f" {r.get('rank', '-')} |" if ranked else ""
        lines.append(f"| {r['path']} | {r['shape']} | {r['sparsity']:.3f} | {r['pattern'] or '-'} "
                     f"|{rank} {_fmt(f.get('sigma_plus'))} | {_fmt(f.get('bulk_fraction'))} |")
    if report.skipped:
        lines += ["", "Left dense:"] + [f"- {p}: {why}" for p, why in report.skipped.items()]
    lines += _reconstruction_lines(report)
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _reconstruction_lines(report: PruneReport) -> list[str]:
    """The budget line and the per-layer error table of a refit (empty for other runs)."""
    lines = [] if report.budget is None else ["", f"Per-layer budget: {report.budget}."]
    rec = report.reconstruction
    if rec is None:
        return lines
    lines += ["", f"Reconstruction ({rec['mode']}, {rec['calib_images']} calibration images): "
              "relative output error ||(W - W_dense) X||_F / ||W_dense X||_F on the "
              "calibration inputs.", "", "| layer | before | after |", "| --- | --- | --- |"]
    lines += [f"| {r['path']} | {r['before']:.4f} | {r['after']:.4f} |" for r in rec["layers"]]
    lines.append(f"| mean | {rec['mean_before']:.4f} | {rec['mean_after']:.4f} |")
    return lines


def plot_report(layers: list[dict[str, Any]], report: PruneReport, path: str | Path) -> None:
    """Per-layer sparsity, accuracy at each stage, and GMAC with and without ToMe, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4), gridspec_kw={"width_ratios": [3, 1, 1]})
    names = [r["path"].replace("Transformer/encoderblock_", "b").replace("/kernel", "")
             .replace("MultiHeadDotProductAttention_0", "attn").replace("MlpBlock_0", "mlp")
             for r in layers]  # fmt: skip
    axes[0].bar(range(len(layers)), [r["sparsity"] for r in layers], color="tab:blue")
    axes[0].set_xticks(range(len(layers)), names, rotation=90, fontsize=7)
    what = "parameters removed (rank-r factors)" if report.lowrank else "sparsity"
    axes[0].set_ylabel(what)
    axes[0].set_title(f"{report.method} {report.pattern}: {what} per layer")
    stages = [k for k in ACCURACY_KEYS if getattr(report, k) is not None]
    if report.distill is None:
        stages = [k for k in stages if k != "acc_distilled"]
    axes[1].bar([k.removeprefix("acc_") for k in stages], [getattr(report, k) for k in stages],
                color=["tab:gray", "tab:gray", "tab:red", "tab:green"][: len(stages)])
    axes[1].set_ylim(0, 1)
    axes[1].tick_params(axis="x", rotation=45)
    axes[1].set_title("test accuracy" if stages else "test accuracy: not measured (no data)")
    if report.macs:
        m = report.macs
        axes[2].bar(["dense", f"pruned\n(ToMe r={report.tome_r})"],
                    [m.dense_gmac, m.pruned_gmac], color=["tab:gray", "tab:purple"])
        axes[2].set_title(f"GMAC per image ({100 * m.reduction:.1f}% fewer)")
        axes[2].set_ylabel("GMAC")
        axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    else:
        axes[2].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _macs_text(gmac: float) -> str:
    """Always GMAC: ``17.5640 GMAC``; six decimals below 0.1 (``0.012467 GMAC``)."""
    return f"{gmac:.4f} GMAC" if gmac >= 0.1 else f"{gmac:.6f} GMAC"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def format_table(report: PruneReport) -> str:
    """The plain-text summary that ``mpjax prune`` and ``mpjax demo`` print.

    Rows: each accuracy that was measured (dense, dense + ToMe, pruned, and after
    distillation only when one ran), the sparsity of the pruned layers (for low rank: the
    parameters removed and the ranks kept), the layers left dense, the MAC reduction and the
    MACs per image in GMAC, then what the MAC count covers. Without data one line says that
    accuracy was not measured.
    """
    rows: list[tuple[str, Any]] = [("dense accuracy", report.acc_dense)]
    if report.acc_dense_tome is not None:
        rows.append((f"dense + ToMe r={report.tome_r}", report.acc_dense_tome))
    distilled = report.distill is not None
    rows.append(("pruned, before distillation" if distilled else "pruned accuracy",
                 report.acc_pruned))  # fmt: skip
    if distilled:
        rows.append(("pruned, after distillation", report.acc_distilled))
    rows = [r for r in rows if r[1] is not None]
    if report.lowrank:
        ranks = list(report.lowrank["ranks"].values())
        rows.append(("parameters removed (rank-r factors)", report.sparsity))
        rows.append(("rank kept per layer", f"{min(ranks)} to {max(ranks)} (report.md)"
                     if ranks else "-"))  # fmt: skip
    else:
        rows.append(("sparsity of pruned layers", report.sparsity))
    if report.skipped:
        rows.append(("layers left dense", f"{len(report.skipped)} (report.md says why)"))
    m = report.macs
    rows.append(("MAC reduction", m.reduction if m else None))
    if m:
        rows.append(("MACs per image, dense -> pruned",
                     f"{_macs_text(m.dense_gmac)} -> {_macs_text(m.pruned_gmac)}"))  # fmt: skip
    width = max(len(r[0]) for r in rows)
    lines = [f"{name:<{width}}  {_fmt(v)}" for name, v in rows]
    if m and m.note:
        lines.append(f"MACs: {m.note}")
    if report.acc_dense is None:
        lines.append("accuracy not measured: pass --data to evaluate")
    return "\n".join(lines)
