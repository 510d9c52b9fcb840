"""mpjax: pruning neural networks with random matrix theory, in JAX/Flax.

The package is a house with one folder per concept (see ``docs/layout.md``):

* the core every job uses: :mod:`mpjax.tree` (matrix views of parameter pytrees),
  :mod:`mpjax.data` (datasets and batches), :mod:`mpjax.checkpoint` (orbax checkpoints);
* :mod:`mpjax.arch`: numpy-only facts (ViT dimensions, the ToMe token schedule, N:M
  patterns, MAC accounting);
* :mod:`mpjax.mp`: singular spectra, the Marchenko–Pastur law, fits, per-layer analysis;
* :mod:`mpjax.pruning`: masks, budgets and every pruning method behind one registry;
* :mod:`mpjax.models`, :mod:`mpjax.training`, :mod:`mpjax.certificates`,
  :mod:`mpjax.dynamics`, :mod:`mpjax.pipeline`, :mod:`mpjax.export`;
* :mod:`mpjax.torch_runtime` (the ``torch`` extra; imports no JAX) and :mod:`mpjax.cli`.

``import mpjax`` is light: subpackages and the names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Subpackages and core modules reachable as ``mpjax.<name>``.
_SUBMODULES = (
    "arch",
    "certificates",
    "checkpoint",
    "cli",
    "data",
    "dynamics",
    "export",
    "models",
    "mp",
    "pipeline",
    "pruning",
    "training",
    "tree",
)

#: Convenience names: ``mpjax.<name>`` -> the module that defines it.
_NAMES = {
    "Analysis": "mpjax.mp",
    "analyze": "mpjax.mp",
    "MPFit": "mpjax.mp",
    "LayerView": "mpjax.tree",
    "select": "mpjax.tree",
    "restore_params": "mpjax.checkpoint",
    "save_params": "mpjax.checkpoint",
    "prune": "mpjax.pruning",
    "apply_masks": "mpjax.pruning",
    "vit_macs": "mpjax.arch",
    "MLP": "mpjax.models",
    "ViT": "mpjax.models",
    "ViTConfig": "mpjax.models",
    "load_source": "mpjax.models",
}

__all__ = ["__version__", *_SUBMODULES, *sorted(_NAMES)]


def __getattr__(name: str) -> Any:
    """Import a subpackage or a convenience name on first access (PEP 562)."""
    if name in _SUBMODULES:
        return importlib.import_module(f"mpjax.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'mpjax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
