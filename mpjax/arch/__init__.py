"""Numpy-only facts about architectures: ViT dimensions, the ToMe token schedule, N:M patterns and MAC accounting. Importable without JAX."""

from mpjax.arch import macs
from mpjax.arch.macs import (
    PRESETS,
    LayerMacs,
    MacReport,
    ViTDims,
    parse_pattern,
    per_block_r,
    tome_schedule,
    vit_dims,
    vit_macs,
)

__all__ = [
    "macs",
    "LayerMacs",
    "MacReport",
    "PRESETS",
    "ViTDims",
    "parse_pattern",
    "per_block_r",
    "tome_schedule",
    "vit_dims",
    "vit_macs",
]
