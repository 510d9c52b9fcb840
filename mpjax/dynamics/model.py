"""The model side of the dynamics study: the net, its initialisations, member evaluation.

Every member of a run shares one Linen :class:`mpjax.models.MLP`; members differ only in
their params (stacked on a leading member axis). :func:`init_params` draws one member's
params under the config's ``init_scaling``; :func:`evaluate_members` scores all members at
once. Jitted functions are cached on :func:`compile_key`, the config with every field that
does not change the compiled code blanked out.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mpjax.dynamics.config import Arm, DynamicsConfig
from mpjax.models import MLP

PyTree = Any


def model_of(config: DynamicsConfig) -> MLP:
    """The Linen ``MLP`` of the config (every member shares it; members differ in params).

    The ``MLP`` draws the fan-in conventions itself; the others (``"1/width"``,
    ``"1/width^2"``, ``"torch"``) are drawn by :func:`init_params` over its ``"1/N"`` init.
    """
    scaling = config.init_scaling if config.init_scaling in ("1/N", "1/N^2") else "1/N"
    return MLP(tuple(config.widths), config.activation, config.use_bias, config.g, scaling)


def init_params(config: DynamicsConfig, key: jax.Array) -> PyTree:
    """One member's initial params under ``config.init_scaling`` (a traceable function).

    * ``"1/N"``, ``"1/N^2"``: kernels ``N(0, g / d_in^k)`` (:class:`mpjax.models.MLP`),
      biases 0;
    * ``"1/width"``, ``"1/width^2"``: every kernel ``N(0, g / N^k)``, ``N = widths[1]`` the
      hidden width (the papers' ``N(0, 1/N)`` and ``N(0, 1/N^2)`` with ``g = 1``), biases 0;
    * ``"torch"``: kernels and biases ``U(-1/sqrt(d_in), 1/sqrt(d_in))``.
    """
    x0 = jnp.zeros((1, config.widths[0]), jnp.float32)
    params = model_of(config).init(key, x0)["params"]
    if config.init_scaling in ("1/N", "1/N^2"):
        return params
    out = {}
    for i in range(config.n_layers):
        k_w, k_b = jax.random.split(jax.random.fold_in(key, 1000 + i))
        layer, d_in = dict(params[f"Dense_{i}"]), config.widths[i]
        shape = layer["kernel"].shape
        if config.init_scaling == "torch":
            bound = 1.0 / np.sqrt(d_in)
            layer["kernel"] = jax.random.uniform(k_w, shape, jnp.float32, -bound, bound)
            if "bias" in layer:
                layer["bias"] = jax.random.uniform(
                    k_b, layer["bias"].shape, jnp.float32, -bound, bound
                )
        else:
            power = 1 if config.init_scaling == "1/width" else 2
            std = float(np.sqrt(config.g / config.widths[1] ** power))
            layer["kernel"] = std * jax.random.normal(k_w, shape, jnp.float32)
        out[f"Dense_{i}"] = layer
    return out


def compile_key(config: DynamicsConfig) -> DynamicsConfig:
    """The config with every field that does not change the compiled step blanked out.

    Runs that differ only in name, seeds, arms (strengths are traced arrays), epochs or
    pruning share one jitted epoch function; the member count is a shape, handled by jit.
    """
    return dataclasses.replace(
        config,
        name="",
        seeds=(0,),
        arms=(Arm("_"),),
        epochs=0,
        experiment="train",
        n_train=None,
        n_test=None,
        prune_every=1,
        prune_horizon=1.0,
        top_k=1,
        input_scaling="standard",
        input_max_norm=1.0,
        sparsify_theta=0.0,
        split=False,
        noise_levels=(),
        noise_layers="middle",
        noise_eps="variance_c_over_N",
        noise_arm=None,
    )


def _eval_fn(config: DynamicsConfig):
    return _make_eval_fn(compile_key(config))


@functools.lru_cache(maxsize=16)
def _make_eval_fn(config: DynamicsConfig):
    model = model_of(config)

    def ev(p, x, y):
        logits = model.apply({"params": p}, x)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return jnp.stack([ce.sum(), jnp.sum(jnp.argmax(logits, -1) == y)])

    return jax.jit(jax.vmap(ev, in_axes=(0, None, None)))


def evaluate_members(
    config: DynamicsConfig, params: PyTree, x: jax.Array, y: jax.Array, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Per-member mean cross-entropy and accuracy on ``(x, y)``: two arrays ``(M,)``.

    Args:
      config: the run's config.
      params: stacked member params (leading member axis).
      x: inputs ``[n, d_0]``.
      y: integer labels ``[n]``.
      chunk: samples per jitted evaluation call (bounds memory).
    """
    fn, tot = _eval_fn(config), 0.0
    for start in range(0, len(y), chunk):
        tot = tot + np.asarray(fn(params, x[start : start + chunk], y[start : start + chunk]))
    return tot[:, 0] / len(y), tot[:, 1] / len(y)
