"""The prune job: load a model, prune, distill, evaluate and report."""

from mpjax.pipeline import job
from mpjax.pipeline.job import (
    PruneJob,
    run,
)

__all__ = [
    "job",
    "PruneJob",
    "run",
]
