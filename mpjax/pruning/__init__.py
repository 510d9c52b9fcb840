"""Pruning as pytree transformations: masks, N:M patterns, layer budgets and every method behind one registry.

* :mod:`~mpjax.pruning.masks`: the masks contract, exact top-k masks, apply/check/summary;
* :mod:`~mpjax.pruning.nm`: N:M masks and their independent validator;
* :mod:`~mpjax.pruning.budgets`: per-layer budgets, SEB, the cyclic procedure's layer rule;
  :mod:`~mpjax.pruning.alpha`: AlphaPruning-style budgets and budgets by name;
* :mod:`~mpjax.pruning.posttrain`, :mod:`~mpjax.pruning.sparsegpt`: the post-training
  baselines Wanda, RIA and SparseGPT; :mod:`~mpjax.pruning.refit`: refitting the kept
  weights of any mask on calibration inputs;
* :mod:`~mpjax.pruning.ser`, :mod:`~mpjax.pruning.cast`, :mod:`~mpjax.pruning.lowrank`,
  :mod:`~mpjax.pruning.cyclic`, :mod:`~mpjax.pruning.permute`: the methods and transforms;
* :mod:`~mpjax.pruning.registry`: the method table :data:`METHODS`, :func:`prune` and
  :func:`pruner` (:mod:`~mpjax.pruning.methods` holds the built-in transformations).
"""

from mpjax.pruning import (
    alpha,
    budgets,
    cast,
    cyclic,
    lowrank,
    masks,
    methods,
    nm,
    permute,
    posttrain,
    refit,
    registry,
    ser,
    sparsegpt,
)
from mpjax.pruning.alpha import (
    alpha_budget,
    alpha_sparsities,
    layer_budget,
)
from mpjax.pruning.budgets import (
    budget_of,
    cycle_budget,
    cycle_rate,
    layer_signals,
    masks_from_budget,
    seb_regime,
    seb_weights,
)
from mpjax.pruning.cast import (
    block_covariances,
    calibration_cost,
    covariances,
)
from mpjax.pruning.cyclic import (
    cyclic_prune,
    prune_cycle,
)
from mpjax.pruning.lowrank import (
    factorization_saves,
    factorize,
    spectral_truncate,
    truncation_rank,
)
from mpjax.pruning.masks import (
    apply_masks,
    check_masks,
    format_summary,
    magnitude_masks,
    summary,
)
from mpjax.pruning.nm import (
    nm_masks,
    validate_nm,
)
from mpjax.pruning.permute import (
    permute_vit,
)
from mpjax.pruning.posttrain import (
    input_norms,
    layer_hessians,
)
from mpjax.pruning.refit import (
    RefitError,
    reconstruct,
    reconstruct_sequential,
)
from mpjax.pruning.registry import (
    METHODS,
    PruningMethod,
    get_method,
    parse_target,
    prune,
    pruner,
    register,
)
from mpjax.pruning.sparsegpt import (
    sparsegpt_matrix,
)

__all__ = [
    "alpha",
    "budgets",
    "cast",
    "cyclic",
    "lowrank",
    "masks",
    "methods",
    "nm",
    "permute",
    "posttrain",
    "refit",
    "registry",
    "ser",
    "sparsegpt",
    "RefitError",
    "alpha_budget",
    "alpha_sparsities",
    "input_norms",
    "layer_budget",
    "layer_hessians",
    "reconstruct",
    "reconstruct_sequential",
    "sparsegpt_matrix",
    "METHODS",
    "PruningMethod",
    "apply_masks",
    "block_covariances",
    "budget_of",
    "calibration_cost",
    "check_masks",
    "covariances",
    "cycle_budget",
    "cycle_rate",
    "cyclic_prune",
    "factorization_saves",
    "factorize",
    "format_summary",
    "get_method",
    "layer_signals",
    "magnitude_masks",
    "masks_from_budget",
    "nm_masks",
    "parse_target",
    "permute_vit",
    "prune",
    "prune_cycle",
    "pruner",
    "register",
    "seb_regime",
    "seb_weights",
    "spectral_truncate",
    "summary",
    "truncation_rank",
    "validate_nm",
]
