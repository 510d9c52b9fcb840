"""Pruning as pytree transformations: masks, N:M patterns, layer budgets and every method behind one entry point."""

from mpjax.pruning import budgets, cast, cyclic, lowrank, masks, permute, registry, ser
from mpjax.pruning.lowrank import (
    factorize,
    spectral_truncate,
)
from mpjax.pruning.masks import (
    apply_masks,
    check_masks,
    magnitude_masks,
    nm_masks,
    validate_nm,
)
from mpjax.pruning.registry import (
    METHODS,
    prune,
    pruner,
)

__all__ = [
    "budgets",
    "cast",
    "cyclic",
    "lowrank",
    "masks",
    "permute",
    "registry",
    "ser",
    "METHODS",
    "apply_masks",
    "check_masks",
    "factorize",
    "magnitude_masks",
    "nm_masks",
    "prune",
    "pruner",
    "spectral_truncate",
    "validate_nm",
]
