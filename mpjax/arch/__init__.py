"""Numpy-only facts about architectures: ViT dimensions, the ToMe token schedule, N:M patterns and MAC accounting. Importable without JAX.

* :mod:`~mpjax.arch.vit`: :class:`ViTDims`, :data:`PRESETS` (the one table of ViT shapes),
  :func:`vit_dims`;
* :mod:`~mpjax.arch.tokens`: the ToMe token schedule (:func:`tome_schedule`);
* :mod:`~mpjax.arch.patterns`: the typed N:M pattern :class:`NMPattern` and its parser;
* :mod:`~mpjax.arch.macs`: MAC accounting (:func:`vit_macs`).
"""

from mpjax.arch import macs, patterns, tokens, vit
from mpjax.arch.macs import (
    LayerMacs,
    MacReport,
    vit_macs,
)
from mpjax.arch.patterns import (
    DENSE,
    NMPattern,
    parse_pattern,
)
from mpjax.arch.tokens import (
    per_block_r,
    tome_merges,
    tome_schedule,
)
from mpjax.arch.vit import (
    LAYER_TYPES,
    PRESETS,
    ViTDims,
    vit_dims,
)

__all__ = [
    "macs",
    "patterns",
    "tokens",
    "vit",
    "DENSE",
    "LAYER_TYPES",
    "LayerMacs",
    "MacReport",
    "NMPattern",
    "PRESETS",
    "ViTDims",
    "parse_pattern",
    "per_block_r",
    "tome_merges",
    "tome_schedule",
    "vit_dims",
    "vit_macs",
]
