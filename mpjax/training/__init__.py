"""Training and frozen-mask distillation: the KD loss, the masked optax transformation, the data-parallel loop, recipes and the shipped models."""

from mpjax.training import loop, recipes
from mpjax.training.loop import (
    distill,
    evaluate,
    kd_loss,
    masked_updates,
    train_step,
)
from mpjax.training.recipes import (
    RECIPES,
    load_shipped_model,
)

__all__ = [
    "loop",
    "recipes",
    "RECIPES",
    "distill",
    "evaluate",
    "kd_loss",
    "load_shipped_model",
    "masked_updates",
    "train_step",
]
