"""SER, spectral edge reallocation: prune, let the removed weights compete, restore (P26).

1. Over-prune: remove the globally smallest ``|W_ij| / w_l`` to sparsity ``s + over``
   (``over = 0.03``; ``w_l`` = SEB layer weights, or 1 for plain magnitude).
2. The removed entries form the *reservoir*. One selection phase trains only the reservoir,
   starting from zero, with a few SGD steps ``w <- w - lr * grad`` driven by a user-supplied
   ``grad_fn(params) -> grads`` (kept weights and every other leaf frozen).
3. Restore the reservoir entries with the largest ``|delta w| * rho_l`` until the sparsity is
   exactly ``s`` (``rho_l`` = SEB weight or 1); restored weights take their dense value
   (``restore_value="dense"``) or their trained value (``"trained"``).

Afterwards the mask is frozen and fine-tuned (one masked epoch in the paper; the caller's
job). Hybrid: exact global magnitude up to ``s = 0.20``, SER above.

Everything is traceable when ``grad_fn`` is: ``jax.jit(lambda p: ser(p, s, grad_fn))`` works.
See `docs/method/ser.md` (SER).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from mpjax import tree
from mpjax.pruning import masks

PyTree = Any
GradFn = Callable[[PyTree], PyTree]

__all__ = [
    "GradFn",
    "SERInfo",
    "hybrid",
    "ser",
]


class SERInfo(NamedTuple):
    """Diagnostics of :func:`ser`.

    Attributes:
      over_masks: masks after over-pruning to ``s + over``.
      restored: ``{path: bool}`` entries brought back from the reservoir.
      n_restored: how many were restored.
    """

    over_masks: PyTree
    restored: dict[str, jax.Array]
    n_restored: jax.Array


def _keep_top(score: jax.Array, count: Any) -> jax.Array:
    """Bool mask of the ``count`` largest entries (ties: higher flat index kept)."""
    return masks.remove_lowest(score, score.size - jnp.asarray(count, jnp.int32))


def ser(
    params: PyTree,
    sparsity: Any,
    grad_fn: GradFn,
    *,
    layer_weights: Mapping[str, Any] | None = None,
    rho: Mapping[str, Any] | None = None,
    over: float = 0.03,
    steps: int = 5,
    lr: float = 0.01,
    restore_value: str = "dense",
    views: Mapping[str, tree.LayerView] | None = None,
) -> tuple[PyTree, PyTree, SERInfo]:
    """Prune–restore to exactly ``sparsity`` (global over ``views``).

    Args:
      params: dense parameters.
      sparsity: target ``s`` in ``[0, 1)``; ``s + over`` is capped below 1.
      grad_fn: ``params -> grads`` (same structure), e.g. ``jax.grad`` of a loss on a
        calibration batch; called ``steps`` times.
      layer_weights: SEB ``w_l`` for the over-pruning score ``|W| / w_l`` (default 1).
      rho: restore weights ``rho_l`` (default ``layer_weights``, else 1).
      over, steps, lr: over-pruning margin and the selection phase's SGD.
      restore_value: ``"dense"`` or ``"trained"``.
      views: layers to prune (default ``tree.select(params)``).

    Returns:
      ``(params, masks, SERInfo)``.
    """
    masks.check_sparsity(sparsity)
    if restore_value not in ("dense", "trained"):
        raise ValueError(f"restore_value={restore_value!r}; expected 'dense' or 'trained'.")
    views = tree.select(params) if views is None else views
    rho = rho if rho is not None else layer_weights
    s_over = jnp.minimum(jnp.asarray(sparsity, jnp.float32) + over, 0.999)
    over_masks = masks.magnitude_masks(params, s_over, scope="global", views=views,
                                           layer_weights=layer_weights)
    # The selection phase runs on a float32 copy: low-precision gradients would make the
    # restore ranking depend on rounding (and jit differ from eager).
    start = jax.tree.map(lambda x: jnp.asarray(x).astype(jnp.promote_types(x.dtype, jnp.float32)),
                         masks.apply_masks(params, over_masks))
    om = tree.flatten(over_masks)

    p = start
    for _ in range(steps):
        g = tree.flatten(grad_fn(p))
        flat = tree.flatten(p)
        for path in views:
            flat[path] = flat[path] - (lr * jnp.where(om[path], 0.0, g[path])).astype(
                flat[path].dtype)
        p = tree.unflatten_like(p, flat)

    trained, start_f = tree.flatten(p), tree.flatten(start)
    scores = []
    for path in views:
        delta = jnp.abs(trained[path].astype(jnp.float32) - start_f[path].astype(jnp.float32))
        w = 1.0 if rho is None else rho[path]
        scores.append(jnp.ravel(jnp.where(om[path], -1.0, delta * w)))
    total = sum(v.d_out * v.d_in for v in views.values())
    n_restore = masks.n_remove(s_over, total) - masks.n_remove(sparsity, total)
    keep = _keep_top(jnp.concatenate(scores), n_restore)

    dense = tree.flatten(params)
    new_p, new_m, restored, pos = {}, {}, {}, 0
    for path in views:
        size = om[path].size
        back = keep[pos:pos + size].reshape(om[path].shape)
        pos += size
        m = jnp.logical_or(om[path], back)
        src = dense[path] if restore_value == "dense" else jnp.where(back, trained[path],
                                                                      dense[path])
        new_p[path] = jnp.where(m, src, jnp.zeros((), jnp.asarray(src).dtype))
        new_m[path], restored[path] = m, back
    out = dict(dense)
    out.update(new_p)
    return (tree.unflatten_like(params, out), tree.unflatten_like(params, new_m),
            SERInfo(over_masks, restored, n_restore))


def hybrid(
    params: PyTree,
    sparsity: float,
    grad_fn: GradFn,
    *,
    switch: float = 0.20,
    **kwargs: Any,
) -> tuple[PyTree, PyTree]:
    """Hybrid schedule: exact global magnitude for ``s <= switch`` (0.20), SER above.

    Args:
      params: dense parameters.
      sparsity: target ``s``; must be a concrete float here (it picks the branch).
      grad_fn: ``params -> grads`` for the SER branch.
      switch: the sparsity up to which plain global magnitude is used.
      **kwargs: options of :func:`ser` (``views`` also selects the magnitude layers).

    Returns:
      ``(params, masks)``.
    """
    masks.check_sparsity(sparsity)
    views = kwargs.get("views")
    if float(sparsity) <= switch:
        m = masks.magnitude_masks(params, sparsity, scope="global", views=views)
        return masks.apply_masks(params, m), m
    p, m, _ = ser(params, sparsity, grad_fn, **kwargs)
    return p, m
