"""Training and frozen-mask distillation: the KD loss, the masked optax transformation, the
data-parallel step and resumable loop, progress, evaluation and recipes (the shipped model
itself is :mod:`mpjax.models.shipped`).

See `docs/method/distillation.md` for the loss and the frozen masks.
"""

from mpjax.training import (
    config,
    evaluation,
    images,
    kd,
    loop,
    masked,
    mesh,
    progress,
    recipes,
    runs,
)
from mpjax.training.config import (
    DistillConfig,
    checkpoint_interval,
    make_optimizer,
    make_schedule,
)
from mpjax.training.evaluation import (
    evaluate,
)
from mpjax.training.images import (
    prepare_images,
)
from mpjax.training.kd import (
    kd_loss,
    kd_terms,
)
from mpjax.training.loop import (
    TrainState,
    distill,
    run_fingerprint,
    train,
    train_step,
)
from mpjax.training.masked import (
    MaskedUpdatesState,
    masked_updates,
)
from mpjax.training.mesh import (
    make_mesh,
)
from mpjax.training.progress import (
    Progress,
)
from mpjax.training.recipes import (
    DISTILL_CONFIGS,
    RECIPES,
    Recipe,
    mlp_apply_fn,
    train_and_evaluate,
    vit_apply_fn,
)

__all__ = [
    "config",
    "evaluation",
    "images",
    "kd",
    "loop",
    "masked",
    "mesh",
    "progress",
    "recipes",
    "runs",
    "DISTILL_CONFIGS",
    "DistillConfig",
    "MaskedUpdatesState",
    "Progress",
    "RECIPES",
    "Recipe",
    "TrainState",
    "checkpoint_interval",
    "distill",
    "evaluate",
    "kd_loss",
    "kd_terms",
    "make_mesh",
    "make_optimizer",
    "make_schedule",
    "masked_updates",
    "mlp_apply_fn",
    "prepare_images",
    "run_fingerprint",
    "train",
    "train_and_evaluate",
    "train_step",
    "vit_apply_fn",
]
