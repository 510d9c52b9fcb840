"""mpjax: pruning neural networks with random matrix theory, in JAX/Flax."""

__version__ = "0.1.0"

from mpjax import tree
from mpjax.tree import LayerView, select

__all__ = ["__version__", "tree", "LayerView", "select"]
