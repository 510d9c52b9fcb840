"""Fully connected networks for the random-matrix theory experiments.

``MLP(widths=(784, 1000, 1000, 10))`` has ``L = len(widths) - 1`` Dense layers named
``Dense_0 .. Dense_{L-1}``; layer ``i`` maps ``widths[i] -> widths[i+1]``. Weights start iid

    W_ij ~ N(0, g / N)       (init_scaling="1/N",   N = fan_in = widths[i])
    W_ij ~ N(0, g / N^2)     (init_scaling="1/N^2")

so with ``g = 1`` the matrix view ``W`` (d_out, d_in) has singular values filling the
Marchenko-Pastur bulk ``[sqrt(g)|1 - sqrt c|, sqrt(g)(1 + sqrt c)]``, c = d_out/d_in (the
"1/N" case), as [P25]/[P26] assume for the random part R of ``W = S + R``.

Each layer's input ``psi1(s)`` (the activation entering ``Dense_i``) is sown into the
``intermediates`` collection as ``input_{i}`` so certificates can capture it::

    logits, state = model.apply({"params": p}, x, mutable=["intermediates"])
    h0 = state["intermediates"]["input_0"][0]   # [B, widths[0]]
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {"relu": nn.relu, "abs": jnp.abs, "tanh": jnp.tanh, "identity": lambda x: x}


def scaled_normal(g: float = 1.0, power: int = 1) -> nn.initializers.Initializer:
    """Kernel init ``N(0, g / fan_in**power)`` for a ``(fan_in, fan_out)`` Dense kernel."""

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        fan_in = shape[0]
        return jax.random.normal(key, shape, dtype) * jnp.sqrt(g / fan_in**power).astype(dtype)

    return init


class MLP(nn.Module):
    """Fully connected net ``x -> Dense_{L-1}(act(... act(Dense_0(flatten(x)))))``.

    Attributes:
      widths: ``(d_0, d_1, ..., d_L)``; ``d_0`` is the flattened input size, ``d_L`` the
        number of logits.
      activation: ``"relu"`` or ``"abs"`` (both 1-Lipschitz, as the certificates assume),
        also ``"tanh"`` / ``"identity"``.
      use_bias: add a bias to every layer (initialised to zero).
      g: variance scale of the initial weights.
      init_scaling: ``"1/N"`` (variance ``g/fan_in``) or ``"1/N^2"`` (``g/fan_in^2``).
    """

    widths: Sequence[int] = (784, 1000, 10)
    activation: str = "relu"
    use_bias: bool = True
    g: float = 1.0
    init_scaling: str = "1/N"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits ``[B, widths[-1]]`` of inputs ``[B, ...]`` (flattened to ``[B, widths[0]]``)."""
        if len(self.widths) < 2:
            raise ValueError(f"widths: need at least (d_in, d_out), got {tuple(self.widths)}.")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation: expected one of {sorted(ACTIVATIONS)}, got {self.activation!r}."
            )
        powers = {"1/N": 1, "1/N^2": 2}
        if self.init_scaling not in powers:
            raise ValueError(f"init_scaling: expected '1/N' or '1/N^2', got {self.init_scaling!r}.")
        h = x.reshape(x.shape[0], -1)
        if h.shape[1] != self.widths[0]:
            raise ValueError(
                f"x: flattened input has {h.shape[1]} features but widths[0] = {self.widths[0]}."
            )
        act = ACTIVATIONS[self.activation]
        init = scaled_normal(self.g, powers[self.init_scaling])
        n_layers = len(self.widths) - 1
        for i, width in enumerate(self.widths[1:]):
            self.sow("intermediates", f"input_{i}", h)
            h = nn.Dense(
                width,
                use_bias=self.use_bias,
                kernel_init=init,
                bias_init=nn.initializers.zeros,
                name=f"Dense_{i}",
            )(h)
            if i < n_layers - 1:
                h = act(h)
        return h


def init(
    widths: Sequence[int],
    key: jax.Array,
    activation: str = "relu",
    use_bias: bool = True,
    g: float = 1.0,
    init_scaling: str = "1/N",
) -> dict:
    """Parameters of ``MLP(widths, ...)``: ``{"Dense_i": {"kernel", "bias"}}`` (no batch needed).

    Examples:
      >>> import jax
      >>> p = init((784, 100, 10), jax.random.key(0))
      >>> p["Dense_0"]["kernel"].shape, p["Dense_1"]["kernel"].shape
      ((784, 100), (100, 10))
    """
    model = MLP(tuple(widths), activation, use_bias, g, init_scaling)
    return model.init(key, jnp.zeros((1, widths[0]), jnp.float32))["params"]


def layer_inputs(model: MLP, params: dict, x: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
    """Logits and the list of every layer's input ``[psi1_0(x), ..., psi1_{L-1}(x)]``."""
    logits, state = model.apply({"params": params}, x, mutable=["intermediates"])
    inter = state["intermediates"]
    return logits, [inter[f"input_{i}"][0] for i in range(len(model.widths) - 1)]
