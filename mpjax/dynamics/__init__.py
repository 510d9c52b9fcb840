"""The L2 dynamics study: spectra of fully connected nets during L1/L2-regularised training."""

from mpjax.dynamics import config, data, experiments, plots, record, store, trainer
from mpjax.dynamics.config import (
    CONFIGS,
    DynamicsConfig,
)
from mpjax.dynamics.trainer import (
    train,
)

__all__ = [
    "config",
    "data",
    "experiments",
    "plots",
    "record",
    "store",
    "trainer",
    "CONFIGS",
    "DynamicsConfig",
    "train",
]
