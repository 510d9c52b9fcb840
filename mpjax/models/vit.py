"""Vision Transformer (Linen) with the google ``vit_jax`` / big_vision parameter layout.

Parameter tree (``D`` hidden, ``H`` heads, ``hd = D/H``, ``T = (S/p)^2 + 1`` tokens)::

    embedding/{kernel (p, p, C, D), bias (D,)}            patch embedding (a strided conv)
    cls (1, 1, D)
    Transformer/posembed_input/pos_embedding (1, T, D)
    Transformer/encoderblock_{i}/LayerNorm_0/{scale, bias}
    Transformer/encoderblock_{i}/MultiHeadDotProductAttention_0/{query,key,value}/
        {kernel (D, H, hd), bias (H, hd)}
    Transformer/encoderblock_{i}/MultiHeadDotProductAttention_0/out/{kernel (H, hd, D), bias (D,)}
    Transformer/encoderblock_{i}/LayerNorm_1/{scale, bias}
    Transformer/encoderblock_{i}/MlpBlock_0/Dense_0/{kernel (D, mlp), bias}
    Transformer/encoderblock_{i}/MlpBlock_0/Dense_1/{kernel (mlp, D), bias}
    Transformer/encoder_norm/{scale, bias}
    head/{kernel (D, classes), bias}

so ``.npz`` checkpoints of that layout load as they are (see :mod:`mpjax.models.sources`).
Semantics follow timm's ``VisionTransformer`` (class-token pooling, pre-norm blocks,
exact GELU, LayerNorm ``eps = 1e-6``), so converted timm weights give the same logits.

Capturing layer inputs (for CAST calibration and certificates): with
``capture_inputs=True`` every Dense/attention/patch layer sows its input into the
``intermediates`` collection at its own module path under the name ``input``, i.e. the
capture of ``.../MlpBlock_0/Dense_0/kernel`` is at ``.../MlpBlock_0/Dense_0/input``.
:func:`layer_inputs` returns them keyed by kernel path as ``[rows, d_in]`` matrices whose
columns match the :mod:`mpjax.tree` matrix view (the patch input is the image cut into
``p x p x C`` patches in ``(kh, kw, cin)`` order). ToMe: ``tome_r`` (see
:mod:`mpjax.models.tome`; ``tome_r=0`` is the plain ViT, bit for bit).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mpjax import arch, tree
from mpjax.models import tome

Initializer = Callable[..., jax.Array]


#: The ViT-B/16 shape: the default of :class:`ViTConfig`, as of :class:`mpjax.arch.ViTDims`.
_DEFAULT = arch.PRESETS["vit-b16"]


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """Shape of a ViT plus the model-only fields (hashable, so it can sit on a Linen module).

    The shapes are those of :class:`mpjax.arch.ViTDims` under the Flax names (``hidden``
    is ``hidden_size``, ``layers`` is ``num_layers``, ...); presets come from the one table
    :data:`mpjax.arch.PRESETS` (see :func:`config_for`).

    Attributes:
      patch_size: side ``p`` of the square patches.
      hidden_size: token width ``D``.
      num_layers: encoder blocks.
      num_heads: attention heads ``H`` (``D % H == 0``).
      mlp_dim: hidden width of each block's MLP.
      image_size: side ``S`` of the square input (``S % p == 0``).
      channels: input channels ``C``.
      num_classes: logits.
      layernorm_eps: LayerNorm epsilon (1e-6 as timm / big_vision; HF configs use 1e-12).
      dtype: compute dtype name (params stay float32), e.g. ``"bfloat16"`` on accelerators.
    """

    patch_size: int = _DEFAULT.patch_size
    hidden_size: int = _DEFAULT.hidden
    num_layers: int = _DEFAULT.layers
    num_heads: int = _DEFAULT.heads
    mlp_dim: int = _DEFAULT.mlp
    image_size: int = _DEFAULT.image_size
    channels: int = _DEFAULT.channels
    num_classes: int = _DEFAULT.num_classes
    layernorm_eps: float = 1e-6
    dtype: str = "float32"

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"num_heads: {self.num_heads} does not divide hidden_size {self.hidden_size}."
            )
        if self.image_size % self.patch_size:
            raise ValueError(
                f"patch_size: {self.patch_size} does not divide image_size {self.image_size}."
            )

    @classmethod
    def from_dims(cls, dims: arch.ViTDims, **overrides: Any) -> ViTConfig:
        """The config of an :class:`mpjax.arch.ViTDims` shape, with some fields changed.

        Examples:
          >>> ViTConfig.from_dims(arch.PRESETS["vit-s16"], dtype="bfloat16").hidden_size
          384
        """
        fields = dict(
            patch_size=dims.patch_size,
            hidden_size=dims.hidden,
            num_layers=dims.layers,
            num_heads=dims.heads,
            mlp_dim=dims.mlp,
            image_size=dims.image_size,
            channels=dims.channels,
            num_classes=dims.num_classes,
        )
        return cls(**{**fields, **overrides})

    @property
    def dims(self) -> arch.ViTDims:
        """The shape as an :class:`mpjax.arch.ViTDims`."""
        return arch.vit_dims(self)

    @property
    def head_dim(self) -> int:
        """``D / H``."""
        return self.hidden_size // self.num_heads

    @property
    def num_patches(self) -> int:
        """``(S / p)^2``, as :attr:`mpjax.arch.ViTDims.patches`."""
        return self.dims.patches

    @property
    def num_tokens(self) -> int:
        """Patches plus the class token, as :attr:`mpjax.arch.ViTDims.tokens`."""
        return self.dims.tokens

    def replace(self, **changes: Any) -> ViTConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def config_for(name: str, **overrides: Any) -> ViTConfig:
    """The config of a preset of :data:`mpjax.arch.PRESETS`, with some fields changed.

    Presets: ``"ti16"``, ``"s16"``, ``"b16"``, ``"l16"`` (ImageNet, 224 px, 1000 classes)
    and ``"fmnist"`` (28x28x1 Fashion-MNIST); a ``"vit-"`` or ``"vit_"`` prefix is accepted.

    Raises:
      ValueError: for an unknown name.

    Examples:
      >>> config_for("b16").num_tokens, config_for("fmnist").num_tokens
      (197, 17)
    """
    key = name.lower().removeprefix("vit-").removeprefix("vit_")
    if f"vit-{key}" not in arch.PRESETS:
        known = sorted(k.removeprefix("vit-") for k in arch.PRESETS)
        raise ValueError(f"name: unknown ViT config {name!r}; expected one of {known}.")
    return ViTConfig.from_dims(arch.PRESETS[f"vit-{key}"], **overrides)


def _flat_init(base: Initializer, n_in_axes: int) -> Initializer:
    """Apply a 2-D initializer to the ``(prod(in), prod(out))`` view of an N-D kernel."""

    def init(key, shape, dtype=jnp.float32):
        n_in = math.prod(shape[:n_in_axes])
        return base(key, (n_in, math.prod(shape[n_in_axes:])), dtype).reshape(shape)

    return init


def _sow_input(module: nn.Module, x: jax.Array) -> None:
    module.sow("intermediates", "input", x, init_fn=lambda: None, reduce_fn=lambda _, v: v)


class Linear(nn.Module):
    """``y = x . kernel + bias`` contracting the last ``in_axes`` axes of ``x`` (Dense /
    DenseGeneral with Linen's param names and layouts)."""

    features: tuple[int, ...]
    in_axes: int = 1
    capture: bool = False
    kernel_init: Initializer = nn.initializers.xavier_uniform()
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_shape = x.shape[x.ndim - self.in_axes :]
        init = _flat_init(self.kernel_init, self.in_axes)
        kernel = self.param("kernel", init, tuple(in_shape) + tuple(self.features))
        bias = self.param("bias", nn.initializers.zeros, tuple(self.features))
        if self.capture:
            _sow_input(self, x)
        y = jnp.tensordot(x.astype(self.dtype), kernel.astype(self.dtype), axes=self.in_axes)
        return y + bias.astype(self.dtype)


class PatchEmbed(nn.Module):
    """Non-overlapping ``p x p`` patch embedding, kernel ``(p, p, C, D)`` as a Linen Conv."""

    patch_size: int
    features: int
    capture: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        b, h, w, c = images.shape
        p = self.patch_size
        patches = images.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
        patches = patches.reshape(b, (h // p) * (w // p), p * p * c)
        init = _flat_init(nn.initializers.lecun_normal(), 3)
        kernel = self.param("kernel", init, (p, p, c, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        if self.capture:
            _sow_input(self, patches)
        flat = kernel.reshape(p * p * c, self.features).astype(self.dtype)
        return patches.astype(self.dtype) @ flat + bias.astype(self.dtype)


class Attention(nn.Module):
    """Multi-head self-attention; ``size`` adds ``log(size)`` to the logits (ToMe's
    proportional attention). Returns the output and the keys ``[B, T, H, hd]``."""

    num_heads: int
    capture: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, size: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        d = x.shape[-1]
        hd = d // self.num_heads
        proj = dict(features=(self.num_heads, hd), capture=self.capture, dtype=self.dtype)
        q = Linear(**proj, name="query")(x)
        k = Linear(**proj, name="key")(x)
        v = Linear(**proj, name="value")(x)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q / jnp.sqrt(hd).astype(q.dtype), k)
        logits = logits.astype(jnp.float32)
        if size is not None:
            logits = logits + jnp.log(size)[:, None, None, :, 0]
        weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
        out = Linear((d,), in_axes=2, capture=self.capture, dtype=self.dtype, name="out")(out)
        return out, k


class MlpBlock(nn.Module):
    """``Dense_1(gelu(Dense_0(x)))`` with exact (erf) GELU, as timm."""

    mlp_dim: int
    capture: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = Linear((self.mlp_dim,), capture=self.capture, dtype=self.dtype, name="Dense_0")(x)
        h = nn.gelu(h, approximate=False)
        return Linear((x.shape[-1],), capture=self.capture, dtype=self.dtype, name="Dense_1")(h)


class EncoderBlock(nn.Module):
    """Pre-norm block; with ``r > 0`` ToMe merges ``r`` tokens between attention and MLP."""

    config: ViTConfig
    capture: bool = False

    @nn.compact
    def __call__(
        self, x: jax.Array, size: jax.Array | None, r: int
    ) -> tuple[jax.Array, jax.Array | None]:
        cfg, dtype = self.config, jnp.dtype(self.config.dtype)
        y = nn.LayerNorm(epsilon=cfg.layernorm_eps, dtype=dtype, name="LayerNorm_0")(x)
        y, k = Attention(cfg.num_heads, self.capture, dtype, name="MultiHeadDotProductAttention_0")(
            y, size
        )
        x = x + y
        if r > 0:
            x, size = tome.merge_tokens(x, size, k.mean(axis=-2), r, class_token=True)
        y = nn.LayerNorm(epsilon=cfg.layernorm_eps, dtype=dtype, name="LayerNorm_1")(x)
        return x + MlpBlock(cfg.mlp_dim, self.capture, dtype, name="MlpBlock_0")(y), size


class Encoder(nn.Module):
    """Position embedding, the blocks and the final norm (the ``Transformer`` scope)."""

    config: ViTConfig
    capture: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, tome_r: Sequence[int]) -> jax.Array:
        cfg = self.config
        x = x + PositionEmbedding(cfg.num_tokens, cfg.hidden_size, name="posembed_input")()
        size = jnp.ones(x.shape[:2] + (1,), x.dtype) if any(tome_r) else None
        for i, r in enumerate(tome_r):
            x, size = EncoderBlock(cfg, self.capture, name=f"encoderblock_{i}")(x, size, r)
        return nn.LayerNorm(epsilon=cfg.layernorm_eps, name="encoder_norm")(x)


class PositionEmbedding(nn.Module):
    """Learned ``pos_embedding (1, T, D)`` (class token included)."""

    num_tokens: int
    features: int

    @nn.compact
    def __call__(self) -> jax.Array:
        init = nn.initializers.normal(stddev=0.02)
        return self.param("pos_embedding", init, (1, self.num_tokens, self.features))


class ViT(nn.Module):
    """ViT classifier with class-token pooling.

    ``__call__(images, tome_r=0, capture_inputs=False)``: ``images`` ``[B, S, S, C]`` (or
    ``[B, S, S]`` when ``C = 1``), float. Returns logits ``[B, num_classes]``.
    ``tome_r`` is an int or a tuple with one int per block (static: jit with
    ``static_argnames="tome_r"``).
    """

    config: ViTConfig

    @nn.compact
    def __call__(
        self, images: jax.Array, tome_r: int | Sequence[int] = 0, capture_inputs: bool = False
    ) -> jax.Array:
        cfg = self.config
        if images.ndim == 3 and cfg.channels == 1:
            images = images[..., None]
        want = (cfg.image_size, cfg.image_size, cfg.channels)
        if images.ndim != 4 or tuple(images.shape[1:]) != want:
            raise ValueError(
                f"images: expected [B, {want[0]}, {want[1]}, {want[2]}], got {images.shape}."
            )
        dtype = jnp.dtype(cfg.dtype)
        x = PatchEmbed(cfg.patch_size, cfg.hidden_size, capture_inputs, dtype, name="embedding")(
            images
        )
        cls = self.param("cls", nn.initializers.zeros, (1, 1, cfg.hidden_size))
        x = jnp.concatenate(
            [jnp.broadcast_to(cls.astype(x.dtype), (x.shape[0], 1, x.shape[2])), x], 1
        )
        x = Encoder(cfg, capture_inputs, name="Transformer")(
            x, arch.per_block_r(tome_r, cfg.num_layers)
        )
        head = Linear(
            (cfg.num_classes,), capture=capture_inputs, dtype=dtype,
            kernel_init=nn.initializers.normal(0.02), name="head",
        )  # fmt: skip
        return head(x[:, 0]).astype(jnp.float32)


def init_params(config: ViTConfig, key: jax.Array) -> dict:
    """Linen ``params`` of ``ViT(config)`` (a jitted Flax init; see
    :func:`mpjax.models.sources.random_init` for a fast numpy init of big models)."""
    return _init_params(config, key)


@functools.partial(jax.jit, static_argnums=0)
def _init_params(config: ViTConfig, key: jax.Array) -> dict:
    shape = (1, config.image_size, config.image_size, config.channels)
    return ViT(config).init(key, jnp.zeros(shape, jnp.float32))["params"]


def abstract_params(config: ViTConfig) -> dict:
    """``jax.ShapeDtypeStruct`` tree of the params (no memory, no compute).

    The encoder blocks are identical, so the model is traced with one block and that
    block's shapes stand for ``encoderblock_0 .. encoderblock_{L-1}``, in the order a full
    trace gives (ViT-B/16 on a 2-core CPU: ~0.1 s instead of 0.3-0.45 s).
    """
    one = dataclasses.replace(config, num_layers=1)
    traced = jax.eval_shape(lambda k: init_params(one, k), jax.random.key(0))
    encoder = {}
    for name, sub in traced["Transformer"].items():
        if name == "encoderblock_0":
            # a fresh container per block: no two blocks share a dict
            encoder.update(
                {f"encoderblock_{i}": jax.tree.map(lambda x: x, sub) for i in range(config.num_layers)}
            )
        else:
            encoder[name] = sub
    return {**traced, "Transformer": encoder}


def token_counts(config: ViTConfig, tome_r: int | Sequence[int] = 0) -> list[int]:
    """Tokens entering each block and leaving the last: ``[T_0, ..., T_L]``.

    The ToMe schedule :func:`mpjax.arch.tome_schedule` with one more entry: block ``l``'s
    attention runs on ``T_l`` tokens and its MLP on ``T_{l+1}``.

    Examples:
      >>> token_counts(config_for("b16"), 8)[:3], token_counts(config_for("b16"), 8)[-1]
      ([197, 189, 181], 101)
    """
    rs = arch.per_block_r(tome_r, config.num_layers)
    return list(arch.tome_schedule(config.num_tokens, config.num_layers + 1, (*rs, 0)))


def layer_inputs(
    config: ViTConfig, params: dict, images: jax.Array, tome_r: int | Sequence[int] = 0
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Logits and every layer's input as ``{kernel_path: [rows, d_in]}`` (jitted).

    ``rows`` = batch x tokens of that layer (batch only for ``head``); the columns follow
    the :mod:`mpjax.tree` matrix view, so ``inputs @ W.T`` (plus bias) is the layer output.
    """
    r = tome_r if isinstance(tome_r, int) else tuple(int(v) for v in tome_r)
    return _layer_inputs(config, params, images, r)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _layer_inputs(config, params, images, tome_r):
    logits, state = ViT(config).apply(
        {"params": params}, images, tome_r=tome_r, capture_inputs=True, mutable=["intermediates"]
    )
    kernels = tree.flatten(params)
    out = {}
    for path, value in tree.flatten(state["intermediates"]).items():
        kpath = path.rsplit("/", 1)[0] + "/kernel"
        view = tree.view_of(kpath, np.shape(kernels[kpath]))
        out[kpath] = value.reshape(-1, view.d_in)
    return logits, out
