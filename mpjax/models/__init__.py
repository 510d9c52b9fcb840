"""Models: fully connected nets (:mod:`~mpjax.models.mlp`), a ViT with token merging
(:mod:`~mpjax.models.vit`, :mod:`~mpjax.models.tome`) and checkpoint conversion
(:mod:`~mpjax.models.convert`)."""

from mpjax.models import convert, mlp, tome, vit
from mpjax.models.convert import load_source, load_vit_checkpoint
from mpjax.models.mlp import MLP
from mpjax.models.vit import ViT, ViTConfig, config_for

__all__ = [
    "convert",
    "mlp",
    "tome",
    "vit",
    "MLP",
    "ViT",
    "ViTConfig",
    "config_for",
    "load_source",
    "load_vit_checkpoint",
]
