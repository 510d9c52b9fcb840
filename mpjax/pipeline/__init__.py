"""The prune job: load a model, prune, distill, evaluate and report."""

from mpjax.pipeline import compare, job, macs, oneshot, report, workdir
from mpjax.pipeline.job import (
    SHIPPED,
    VIT_BLOCKS,
    PruneJob,
    run,
)
from mpjax.pipeline.macs import (
    layer_patterns,
    mac_summary,
)
from mpjax.pipeline.report import (
    MacSummary,
    PruneReport,
    format_table,
    write_report,
)

__all__ = [
    "compare",
    "job",
    "macs",
    "oneshot",
    "report",
    "workdir",
    "SHIPPED",
    "VIT_BLOCKS",
    "MacSummary",
    "PruneJob",
    "PruneReport",
    "format_table",
    "layer_patterns",
    "mac_summary",
    "run",
    "write_report",
]
