"""Frozen pruning masks as an optax transformation: pruned weights stay exactly zero.

:func:`masked_updates` wraps any optax optimizer. Gradients of pruned entries are zeroed
before the inner optimizer sees them (its moment estimates stay zero there), and the update
of a pruned entry is ``-w``, so that ``optax.apply_updates`` leaves ``w + (-w) = 0`` exactly
after every step, whatever the inner optimizer does (weight decay, momentum ...). The masks
live in the optimizer state (:class:`MaskedUpdatesState`), so a checkpoint of the state holds
them. See `docs/method/distillation.md` (frozen masks).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mpjax.pruning import check_masks

__all__ = [
    "MaskedUpdatesState",
    "masked_updates",
]

PyTree = Any


class MaskedUpdatesState(NamedTuple):
    """State of :func:`masked_updates`: the inner optimizer's state and the frozen masks."""

    inner_state: optax.OptState  # the wrapped optimizer's state
    masks: PyTree  # bool leaves (True = kept) or None (layer not pruned)


def _is_none(x: Any) -> bool:
    return x is None


def _where_kept(masks: PyTree, tree: PyTree, pruned_value: PyTree | None = None) -> PyTree:
    """``tree`` with pruned entries replaced by 0 (or by ``pruned_value``'s entries)."""
    if pruned_value is None:
        return jax.tree.map(
            lambda m, x: x if m is None else jnp.where(m, x, jnp.zeros_like(x)),
            masks,
            tree,
            is_leaf=_is_none,
        )
    return jax.tree.map(
        lambda m, x, v: x if m is None else jnp.where(m, x, v),
        masks,
        tree,
        pruned_value,
        is_leaf=_is_none,
    )


def masked_updates(
    inner: optax.GradientTransformation, masks: PyTree
) -> optax.GradientTransformation:
    """Wrap an optax optimizer so that pruned weights stay exactly zero.

    Gradients of pruned entries are zeroed before ``inner`` sees them (its moment estimates
    stay zero there), and the returned update of a pruned entry is ``-w`` so that
    ``optax.apply_updates`` leaves ``w + (-w) = 0`` exactly, even if the weight was not zero.

    Args:
      inner: any optax transformation (e.g. ``optax.adamw``).
      masks: masks pytree with params' structure; bool leaves (True = kept) or ``None``
        (not pruned). The masks live in the optimizer state.

    Returns:
      An ``optax.GradientTransformation``; ``update`` needs ``params`` to zero weights that
      were not zero yet (without ``params``, pruned updates are only zeroed).

    Raises:
      ValueError: from ``init`` when the masks do not match the params (the message names
        the parameter path).

    Examples:
      >>> import optax
      >>> params = {"w": jnp.array([1.0, 2.0])}
      >>> tx = masked_updates(optax.sgd(0.1), {"w": jnp.array([True, False])})
      >>> updates, _ = tx.update({"w": jnp.ones(2)}, tx.init(params), params)
      >>> optax.apply_updates(params, updates)["w"].tolist()
      [0.8999999761581421, 0.0]
    """
    masks = jax.tree.map(
        lambda m: m if m is None else jnp.asarray(m, bool), masks, is_leaf=_is_none
    )

    def init_fn(params):
        check_masks(params, masks)
        return MaskedUpdatesState(inner.init(params), masks)

    def update_fn(updates, state, params=None):
        grads = _where_kept(state.masks, updates)
        new, inner_state = inner.update(grads, state.inner_state, params)
        if params is None:
            new = _where_kept(state.masks, new)
        else:
            new = _where_kept(state.masks, new, jax.tree.map(jnp.negative, params))
        return new, MaskedUpdatesState(inner_state, state.masks)

    return optax.GradientTransformation(init_fn, update_fn)
