"""Layer inputs and Lipschitz constants captured from a Flax network.

* :func:`capture_inputs` records the input ``psi1(s)`` of any Linen ``Dense`` /
  ``DenseGeneral`` layer with ``flax.linen.intercept_methods`` (no change to the model);
  :class:`mpjax.models.mlp.MLP` also sows them as ``intermediates/input_{i}``.
* :func:`mlp_lipschitz_bound` gives the provable ``L_s = prod_{k > i} ||W_k||_inf`` for
  ``Dense_i`` of an MLP with a coordinatewise 1-Lipschitz activation.
* :func:`jacobian_lipschitz` samples ``L_s`` from Jacobians where no provable bound exists
  (an estimate, never a certificate); :func:`estimated_lipschitz_fn` wraps it for
  :func:`mpjax.certificates.network.certify_network`.

See ``docs/method/certificates.md`` (provable Lipschitz constants, and estimates that are not).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mpjax import tree
from mpjax.certificates.bounds import ONE_LIPSCHITZ_ACTIVATIONS, mlp_lipschitz

PyTree = Any
Array = Any
#: ``(params, path) -> (L_s, provable)``: the Lipschitz bound of a layer in a network.
LipschitzFn = Callable[[PyTree, str], tuple[Any, bool]]

__all__ = [
    "LipschitzFn",
    "capture_inputs",
    "mlp_lipschitz_bound",
    "jacobian_lipschitz",
    "estimated_lipschitz_fn",
]


def capture_inputs(
    model: nn.Module, params: PyTree, x: Array, paths: Sequence[str]
) -> tuple[Array, dict[str, Array]]:
    """Logits and ``{kernel path: psi1}`` with ``psi1`` of shape ``(batch, [tokens,] d_in)``.

    Raises:
      ValueError: if a path is not a weight matrix of ``params`` or its module never ran.
    """
    views = tree.select(params, include=list(paths))
    missing = [p for p in paths if p not in views]
    if missing:
        raise ValueError(
            f"--layer {missing[0]}: not a weight-matrix path of the model; "
            f"choose from {sorted(tree.select(params))}."
        )
    layers = tuple((p, views[p].layer) for p in paths)
    logits, seen = _capture_fn(model, layers)(params, x)
    for p in paths:
        if p not in seen:
            raise ValueError(f"--layer {p}: module {views[p].layer} was not called by the model.")
        v = seen[p].reshape(seen[p].shape[0], -1, views[p].d_in)  # tokens (and heads) flattened
        seen[p] = v[:, 0] if v.shape[1] == 1 else v
    return logits, seen


@functools.lru_cache(maxsize=32)
def _capture_fn(model: nn.Module, layers: tuple[tuple[str, str], ...]) -> Callable:
    """A jitted ``(params, x) -> (logits, {path: input})`` (cached: one compile per shape)."""
    wanted = {tuple(module.split("/")): path for path, module in layers}

    def run(params, x):
        seen: dict[str, Array] = {}

        def record(next_fun, args, kwargs, context):
            path = wanted.get(tuple(context.module.path))
            if context.method_name == "__call__" and path is not None and path not in seen:
                seen[path] = args[0]
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(record):
            logits = model.apply({"params": params}, x)
        return logits, seen

    return jax.jit(run)


def mlp_lipschitz_bound(params: PyTree, path: str, activation: str = "relu") -> tuple[float, bool]:
    """``(L, provable)`` for ``Dense_i/kernel`` of :class:`mpjax.models.mlp.MLP`.

    ``L = prod_{k > i} ||W_k||_inf`` (``W_k`` the ``(d_out, d_in)`` view of ``Dense_k``); 1 for
    the last layer (``psi2`` is a bias shift: exact).
    """
    m = re.fullmatch(r"Dense_(\d+)/kernel", path)
    if m is None:
        raise ValueError(f"{path}: not an MLP layer path 'Dense_<i>/kernel'.")
    i = int(m.group(1))
    mats = tree.matrices(params)
    down = [
        mats[f"Dense_{k}/kernel"] for k in range(i + 1, len(mats)) if f"Dense_{k}/kernel" in mats
    ]
    return mlp_lipschitz(down, activation), activation in ONE_LIPSCHITZ_ACTIVATIONS


def jacobian_lipschitz(
    model: nn.Module,
    params: PyTree,
    x: Array,
    path: str,
    r: Array,
    n_points: int = 3,
) -> np.ndarray:
    """An ESTIMATE of ``L_s`` per sample from sampled Jacobians, for layers without a bound.

    For each sample, ``max_theta ||d z(s) / d u||_inf`` at the layer outputs
    ``u_theta = A_theta psi1(s) + b`` for ``n_points`` values of ``theta`` in ``[0, 1]``
    (``A`` = the layer in ``params``, ``A_theta = A - (1 - theta) R``); the Jacobian rows are
    logits, its columns every entry of the module output (all tokens). This is a local
    sample of the Lipschitz constant, not an upper bound: bounds built from it must use
    ``provable=False`` and are never certificates (transformer blocks, where no cheap
    provable bound exists).
    """
    view = tree.select(params, include=[path])[path]
    module = tuple(view.layer.split("/"))
    _, psi = capture_inputs(model, params, x, [path])
    r_psi = np.asarray(psi[path]) @ np.asarray(r).T  # (batch, [tokens,] d_out)

    def logits_of(delta, xs):
        def inject(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if context.method_name == "__call__" and tuple(context.module.path) == module:
                out = out + delta.reshape(out.shape).astype(out.dtype)
            return out

        with nn.intercept_methods(inject):
            return model.apply({"params": params}, xs)[0]

    jac = jax.jit(jax.jacrev(logits_of))
    out = np.zeros(len(r_psi))
    for i in range(len(r_psi)):
        for theta in np.linspace(0.0, 1.0, n_points):
            j = np.asarray(jac(jnp.asarray(-(1.0 - theta) * r_psi[i : i + 1]), x[i : i + 1]))
            out[i] = max(out[i], float(np.max(np.sum(np.abs(j.reshape(j.shape[0], -1)), axis=1))))
    return out


def estimated_lipschitz_fn(
    model: nn.Module, x: Array, removed: Mapping[str, Array], n_points: int = 3
) -> LipschitzFn:
    """A ``lipschitz_fn`` for :func:`certify_network` returning ``(jacobian_lipschitz(...),
    False)``: reports built with it are labelled estimates (``hypotheses_hold`` is False)."""

    def fn(params: PyTree, path: str) -> tuple[np.ndarray, bool]:
        return jacobian_lipschitz(model, params, x, path, removed[path], n_points), False

    return fn
