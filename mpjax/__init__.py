"""mpjax: pruning neural networks with random matrix theory, in JAX/Flax.

Modules (one concept each): ``tree`` (matrix views), ``spectra``, ``mp`` (the
Marchenko–Pastur law and fits), ``analysis``, ``masks``, ``budget``, ``prune`` (with
``cast``, ``ser``, ``lowrank``, ``p25``, ``permute``), ``models``, ``data``, ``distill``,
``checkpoint``, ``train``, ``pipeline``, ``objectives``, ``certificates`` / ``certify``,
``dynamics``, ``macs``, ``export``. ``mpjax.torch_runtime`` (needs the ``torch`` extra) is
imported on demand only.
"""

__version__ = "0.1.0"

from mpjax import (
    analysis,
    budget,
    cast,
    certificates,
    certify,
    checkpoint,
    data,
    distill,
    dynamics,
    export,
    lowrank,
    macs,
    masks,
    models,
    mp,
    objectives,
    p25,
    permute,
    pipeline,
    prune,
    ser,
    spectra,
    train,
    tree,
)
from mpjax.analysis import Analysis, analyze
from mpjax.checkpoint import restore_params, save_params
from mpjax.distill import evaluate, kd_loss, masked_updates
from mpjax.dynamics import DynamicsConfig
from mpjax.lowrank import factorize, spectral_truncate
from mpjax.macs import vit_macs
from mpjax.masks import apply_masks, validate_nm
from mpjax.models import MLP, ViT, ViTConfig, config_for, load_source
from mpjax.mp import MPFit
from mpjax.pipeline import PruneJob
from mpjax.train import load_shipped_model
from mpjax.tree import LayerView, select

__all__ = [
    "__version__",
    # modules
    "analysis", "budget", "cast", "certificates", "certify", "checkpoint", "data", "distill",
    "dynamics", "export", "lowrank", "macs", "masks", "models", "mp", "objectives", "p25",
    "permute", "pipeline", "prune", "ser", "spectra", "train", "tree",
    # names
    "Analysis", "DynamicsConfig", "LayerView", "MLP", "MPFit", "PruneJob", "ViT", "ViTConfig",
    "analyze", "apply_masks", "config_for", "evaluate", "factorize", "kd_loss",
    "load_shipped_model", "load_source", "masked_updates", "restore_params", "save_params",
    "select", "spectral_truncate", "validate_nm", "vit_macs",
]  # fmt: skip
