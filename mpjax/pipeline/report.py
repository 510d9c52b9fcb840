"""The prune job's result: a typed :class:`PruneReport`, its JSON, markdown and plot.

:func:`write_report` writes into the job's output directory

* ``report.json``: :meth:`PruneReport.to_json` (the fields of :meth:`PruneReport.to_dict`);
* ``report.md``: the quantities of :data:`TABLE_KEYS`, the MACs, and one row per pruned
  layer with its sparsity and MP fit (``sigma_plus``, bulk fraction);
* ``report.png``: per-layer sparsity, test accuracy at each stage, MACs per image.

:func:`format_table` is the plain-text summary that ``mpjax prune`` and ``mpjax demo`` print.
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
OPTIONAL_KEYS = ("acc_dense", "acc_dense_tome", "acc_pruned", "acc_distilled", "distill")
#: The accuracy fields, one per stage of the job.
ACCURACY_KEYS = ("acc_dense", "acc_dense_tome", "acc_pruned", "acc_distilled")


@dataclasses.dataclass(frozen=True)
class MacSummary:
    """MACs per image of a ViT, dense and pruned (see ``docs/method/macs.md``).

    Attributes:
      dense_gmac: the dense model without ToMe, in GMAC.
      pruned_gmac: the pruned model with the job's ToMe ``r``, in GMAC.
      reduction: ``1 - pruned / dense``.
    """

    dense_gmac: float
    pruned_gmac: float
    reduction: float

    def to_dict(self) -> dict[str, float]:
        """``{"dense_gmac": ..., "pruned_gmac": ..., "reduction": ...}``."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PruneReport:
    """What one prune job did and measured (``report.json`` holds :meth:`to_dict`).

    Attributes:
      source: the model source as given.
      method: the pruning method.
      pattern: ``"unstructured"`` or ``"K:N"``.
      tome_r: ToMe merges per block (on the dense, pruned and distilled model alike).
      permuted: whether an N:M input-channel permutation was baked in.
      sparsity: sparsity of the pruned layers.
      global_sparsity: sparsity over every parameter.
      skipped: ``{layer path: why it was left dense}``.
      macs: MACs per image (``None`` when the model is not a ViT).
      acc_dense: test accuracy of the dense model (``None`` without data).
      acc_dense_tome: of the dense model with ToMe (``None`` without data or ToMe).
      acc_pruned: of the pruned model, before distillation (``None`` without data).
      acc_distilled: after distillation (equals ``acc_pruned`` without distillation).
      distill: ``{"steps", "seconds"}`` of the distillation (``None`` without one).
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
        ``pattern``).
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
    lines += ["", "![report](report.png)", "", "![ESD fits](analysis/esd_grid.png)", "",
              "| layer | shape | sparsity | pattern | sigma_plus | bulk fraction |",
              "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    rows = {r["path"]: r for r in fits.rows}
    for r in layers:
        f = rows.get(r["path"], {})
        lines.append(f"| {r['path']} | {r['shape']} | {r['sparsity']:.3f} | {r['pattern'] or '-'} "
                     f"| {_fmt(f.get('sigma_plus'))} | {_fmt(f.get('bulk_fraction'))} |")
    if report.skipped:
        lines += ["", "Left dense:"] + [f"- {p}: {why}" for p, why in report.skipped.items()]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def plot_report(layers: list[dict[str, Any]], report: PruneReport, path: str | Path) -> None:
    """Per-layer sparsity, accuracy at each stage, and MACs with and without ToMe, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4), gridspec_kw={"width_ratios": [3, 1, 1]})
    names = [r["path"].replace("Transformer/encoderblock_", "b").replace("/kernel", "")
             .replace("MultiHeadDotProductAttention_0", "attn").replace("MlpBlock_0", "mlp")
             for r in layers]  # fmt: skip
    axes[0].bar(range(len(layers)), [r["sparsity"] for r in layers], color="tab:blue")
    axes[0].set_xticks(range(len(layers)), names, rotation=90, fontsize=7)
    axes[0].set_ylabel("sparsity")
    axes[0].set_title(f"{report.method} {report.pattern}: sparsity per layer")
    stages = [k for k in ACCURACY_KEYS if getattr(report, k) is not None]
    axes[1].bar([k.removeprefix("acc_") for k in stages], [getattr(report, k) for k in stages],
                color=["tab:gray", "tab:gray", "tab:red", "tab:green"][: len(stages)])
    axes[1].set_ylim(0, 1)
    axes[1].tick_params(axis="x", rotation=45)
    axes[1].set_title("test accuracy")
    if report.macs:
        m = report.macs
        axes[2].bar(["dense", f"pruned\n(ToMe r={report.tome_r})"],
                    [m.dense_gmac, m.pruned_gmac], color=["tab:gray", "tab:purple"])
        axes[2].set_title(f"GMAC per image ({100 * m.reduction:.1f}% fewer)")
        axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    else:
        axes[2].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _macs_text(gmac: float) -> str:
    return f"{gmac:.4f} GMAC" if gmac >= 0.1 else f"{gmac * 1e3:.4f} MMAC"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def format_table(report: PruneReport) -> str:
    """The plain-text summary table that ``mpjax prune`` (with data) and ``mpjax demo`` print.

    Rows: dense accuracy, (dense + ToMe), pruned before and after distillation, sparsity of
    the pruned layers and MAC reduction; ``-`` where a quantity was not measured.
    """
    rows = [("dense accuracy", report.acc_dense),
            ("pruned, before distillation", report.acc_pruned),
            ("pruned, after distillation", report.acc_distilled),
            ("sparsity of pruned layers", report.sparsity),
            ("MAC reduction", report.macs.reduction if report.macs else None)]  # fmt: skip
    if report.acc_dense_tome is not None:
        rows.insert(1, (f"dense + ToMe r={report.tome_r}", report.acc_dense_tome))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {_fmt(v)}" for name, v in rows)
