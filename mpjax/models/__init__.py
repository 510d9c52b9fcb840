"""Models: fully connected nets (:mod:`~mpjax.models.mlp`), a ViT with token merging
(:mod:`~mpjax.models.vit`, :mod:`~mpjax.models.tome`), model sources
(:mod:`~mpjax.models.sources`, opened lazily by :mod:`~mpjax.models.lazy_sources`), the shipped Fashion-MNIST ViT (:mod:`~mpjax.models.shipped`) and checkpoint layout conversion (:mod:`~mpjax.models.convert`)."""

from mpjax.models import convert, lazy_sources, mlp, shipped, sources, tome, vit
from mpjax.models.convert import (
    flax_to_hf,
    flax_to_timm,
    hf_to_flax,
    timm_to_flax,
)
from mpjax.models.lazy_sources import (
    open_source,
)
from mpjax.models.mlp import MLP
from mpjax.models.shipped import (
    load_shipped_model,
)
from mpjax.models.sources import (
    LoadedModel,
    SourceInfo,
    load_model,
    load_source,
    load_vit_checkpoint,
    random_init,
)
from mpjax.models.vit import (
    ViT,
    ViTConfig,
    config_for,
)

__all__ = [
    "convert",
    "lazy_sources",
    "mlp",
    "shipped",
    "sources",
    "tome",
    "vit",
    "MLP",
    "LoadedModel",
    "SourceInfo",
    "ViT",
    "ViTConfig",
    "config_for",
    "flax_to_hf",
    "flax_to_timm",
    "hf_to_flax",
    "load_model",
    "load_shipped_model",
    "load_source",
    "load_vit_checkpoint",
    "open_source",
    "random_init",
    "timm_to_flax",
]
