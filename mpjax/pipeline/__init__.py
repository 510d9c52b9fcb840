"""The prune job: load a model, prune, distill, evaluate and report."""

from mpjax.pipeline import job, report
from mpjax.pipeline.job import (
    SHIPPED,
    VIT_BLOCKS,
    PruneJob,
    run,
)
from mpjax.pipeline.report import (
    MacSummary,
    PruneReport,
    format_table,
    write_report,
)

__all__ = [
    "job",
    "report",
    "SHIPPED",
    "VIT_BLOCKS",
    "MacSummary",
    "PruneJob",
    "PruneReport",
    "format_table",
    "run",
    "write_report",
]
