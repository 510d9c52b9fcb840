"""Multiply-accumulate (MAC) accounting of a Vision Transformer, dense, N:M-sparse and ToMe.

Conventions (SPEC §4, "MAC accounting"): one MAC is one multiply-add.

* A linear layer applied to ``T`` tokens costs ``T * d_in * d_out`` MACs; with a k:n mask
  (``k`` of every ``n`` weights kept along ``d_in``) it costs ``k/n`` of that (half for 2:4).
* The two attention matmuls (``Q K^T`` and ``A V``) cost ``2 N^2 D`` MACs per block at ``N``
  tokens and width ``D``; they are never sparse.
* The patch embedding is a linear map of the ``N - 1`` patches, ``(N - 1) * p^2 C * D``;
  the head runs on the class token only, ``D * classes``.
* Softmax, LayerNorm, GELU, biases and the ToMe matching itself are not counted.
* ToMe with ``r`` merges per block: block ``l`` runs at ``N_l`` tokens with ``N_0 = N`` and
  ``N_{l+1} = N_l - min(r, (N_l - 1) // 2)`` (the class token is protected), i.e.
  ``197 - 8 l`` for ViT-B/16 at ``r = 8``. The default ``tome_convention="block"`` charges the
  whole block at ``N_l`` (the SPEC's number); ``"merge"`` charges the MLP at ``N_{l+1}``, since
  ToMe merges between attention and MLP.

With these terms ViT-B/16 at 224 px costs 17.564 GMAC dense and 7.059 GMAC with 2:4 on
qkv/proj/fc1/fc2 and ToMe ``r = 8``: a 59.81% reduction. (Without the head the dense number
would round to 17.563, without the patch embedding to 17.448: both terms are in.)

This module is pure Python (no JAX, no torch), so the PyTorch runtime can use it too.

Examples:
  >>> rep = vit_macs("vit-b16")
  >>> round(rep.total / 1e9, 3)
  17.564
  >>> sp = vit_macs("vit-b16", patterns=dict.fromkeys(("qkv", "proj", "fc1", "fc2"), "2:4"), tome_r=8)
  >>> round(sp.total / 1e9, 3), round(100 * sp.reduction, 2)
  (7.059, 59.81)
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

#: Linear layer types of a ViT block plus the stem and the head.
LAYER_TYPES = ("patch_embed", "qkv", "proj", "fc1", "fc2", "head")


@dataclasses.dataclass(frozen=True)
class ViTDims:
    """The sizes of a ViT that MAC accounting (and the torch runtime) needs.

    Attributes:
      image_size: square input side in pixels.
      patch_size: square patch side in pixels.
      hidden: model width ``D``.
      layers: number of encoder blocks.
      mlp: MLP hidden width.
      heads: attention heads.
      num_classes: classifier outputs.
      channels: input channels.
    """

    image_size: int = 224
    patch_size: int = 16
    hidden: int = 768
    layers: int = 12
    mlp: int = 3072
    heads: int = 12
    num_classes: int = 1000
    channels: int = 3

    @property
    def patches(self) -> int:
        """Number of patches ``(image_size / patch_size)^2``."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def tokens(self) -> int:
        """Patches plus the class token."""
        return self.patches + 1


#: Standard 224 px ViTs with 16 px patches and 1000 classes.
PRESETS: dict[str, ViTDims] = {
    "vit-ti16": ViTDims(hidden=192, layers=12, mlp=768, heads=3),
    "vit-s16": ViTDims(hidden=384, layers=12, mlp=1536, heads=6),
    "vit-b16": ViTDims(hidden=768, layers=12, mlp=3072, heads=12),
    "vit-l16": ViTDims(hidden=1024, layers=24, mlp=4096, heads=16),
}

# Field names used by other ViT config classes -> ViTDims field.
_ALIASES = {
    "image_size": ("image_size", "img_size", "resolution"),
    "patch_size": ("patch_size", "patch"),
    "hidden": ("hidden", "hidden_size", "width", "embed_dim", "dim"),
    "layers": ("layers", "num_layers", "depth"),
    "mlp": ("mlp", "mlp_dim", "mlp_size"),
    "heads": ("heads", "num_heads"),
    "num_classes": ("num_classes", "classes", "n_classes"),
    "channels": ("channels", "in_channels", "in_chans", "num_channels"),
}


def vit_dims(config: Any) -> ViTDims:
    """A :class:`ViTDims` from a preset name, a mapping or any config object with ViT fields.

    Accepts ``"vit-b16"`` (or ``"b16"``), a ``ViTDims``, a dict, or an object such as
    ``mpjax.models.vit.ViTConfig`` whose attributes use common names (``hidden_size``,
    ``num_layers``, ``mlp_dim``, ``num_heads``, ...). ``patch_size`` may be a pair.

    Raises:
      ValueError: for an unknown preset name or a config missing a required field.
    """
    if isinstance(config, ViTDims):
        return config
    if isinstance(config, str):
        name = config if config.startswith("vit-") else f"vit-{config}"
        if name not in PRESETS:
            raise ValueError(
                f"config: unknown ViT preset {config!r}; use one of {sorted(PRESETS)}."
            )
        return PRESETS[name]
    get = config.get if isinstance(config, Mapping) else lambda k, d=None: getattr(config, k, d)
    values: dict[str, int] = {}
    for field in dataclasses.fields(ViTDims):
        for alias in _ALIASES[field.name]:
            value = get(alias, None)
            if value is not None:
                if isinstance(value, (tuple, list)):
                    value = value[0]
                values[field.name] = int(value)
                break
        else:
            if field.name not in ("channels", "image_size"):
                raise ValueError(
                    f"config: no field for {field.name!r} (tried {_ALIASES[field.name]}); "
                    "pass a ViTDims or a dict with that key."
                )
    return ViTDims(**values)


def parse_pattern(pattern: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"2:4"`` -> ``(2, 4)`` (k kept of every n); ``None``/``"dense"`` -> ``None``.

    Raises:
      ValueError: if the pattern is not ``"k:n"`` with ``0 < k <= n``.
    """
    if pattern is None or pattern == "dense":
        return None
    if isinstance(pattern, str):
        try:
            k, n = (int(v) for v in pattern.split(":"))
        except ValueError:
            raise ValueError(
                f"pattern: {pattern!r} is not of the form 'k:n' (e.g. '2:4')."
            ) from None
    else:
        k, n = (int(v) for v in pattern)
    if not 0 < k <= n:
        raise ValueError(f"pattern: {pattern!r} needs 0 < k <= n.")
    return k, n


def per_block_r(r: int | Sequence[int], layers: int) -> tuple[int, ...]:
    """ToMe ``r`` as one int per block (an int applies to every block).

    Raises:
      ValueError: a negative ``r`` or a sequence whose length is not ``layers``.
    """
    rs = (int(r),) * layers if isinstance(r, numbers.Integral) else tuple(int(v) for v in r)
    if len(rs) != layers or any(v < 0 for v in rs):
        raise ValueError(f"tome_r: {r!r}; need an int >= 0 or {layers} ints >= 0, one per block.")
    return rs


def tome_schedule(
    tokens: int, layers: int, r: int | Sequence[int], protected: int = 1
) -> tuple[int, ...]:
    """Tokens entering each of ``layers`` blocks under ToMe with ``r`` merges per block.

    ``N_0 = tokens`` and ``N_{l+1} = N_l - min(r_l, (N_l - protected) // 2)``: bipartite
    matching can merge at most half of the unprotected tokens. ``r`` is an int or one int
    per block.

    Examples:
      >>> tome_schedule(197, 4, 8)
      (197, 189, 181, 173)
      >>> tome_schedule(197, 3, (0, 16, 8))
      (197, 197, 181)
    """
    out, n = [], int(tokens)
    for r_l in per_block_r(r, layers):
        out.append(n)
        n -= min(r_l, max(n - protected, 0) // 2)
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class LayerMacs:
    """The MACs of one linear layer (or one block's attention matmuls)."""

    name: str
    layer_type: str
    tokens: int
    d_in: int
    d_out: int
    pattern: str | None
    dense_macs: int
    macs: float


@dataclasses.dataclass(frozen=True)
class MacReport:
    """MAC accounting of a model: per-layer rows and totals.

    Attributes:
      rows: one :class:`LayerMacs` per linear layer and per block's attention matmuls.
      dense_total: MACs of the same model dense and without ToMe (the baseline).
      total: MACs with the given patterns and ToMe.
    """

    rows: tuple[LayerMacs, ...]
    dense_total: int
    total: float

    @property
    def reduction(self) -> float:
        """``1 - total / dense_total``."""
        return 1.0 - self.total / self.dense_total

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (GMAC totals plus the rows)."""
        return {
            "dense_gmac": self.dense_total / 1e9,
            "gmac": self.total / 1e9,
            "reduction": self.reduction,
            "rows": [dataclasses.asdict(r) for r in self.rows],
        }


def _pattern_for(patterns: Mapping[str, Any], name: str, layer_type: str) -> str | None:
    value = patterns.get(name, patterns.get(layer_type))
    parsed = parse_pattern(value)
    return None if parsed is None else f"{parsed[0]}:{parsed[1]}"


def _linear(name: str, layer_type: str, tokens: int, d_in: int, d_out: int, patterns) -> LayerMacs:
    pattern = _pattern_for(patterns, name, layer_type)
    dense = tokens * d_in * d_out
    k, n = parse_pattern(pattern) or (1, 1)
    return LayerMacs(name, layer_type, tokens, d_in, d_out, pattern, dense, dense * k / n)


def vit_macs(
    config: Any,
    patterns: Mapping[str, Any] | None = None,
    tome_r: int | Sequence[int] = 0,
    tome_convention: str = "block",
) -> MacReport:
    """MAC accounting of a ViT forward pass for one image.

    Args:
      config: anything :func:`vit_dims` accepts (``"vit-b16"``, a ViTConfig, a dict).
      patterns: ``{layer type or timm layer name: "k:n" | None}``; layer types are
        :data:`LAYER_TYPES`, names look like ``"blocks.3.mlp.fc1"`` and take precedence.
        A k:n layer costs ``k/n`` of its dense MACs.
      tome_r: ToMe merges per block (0 = off), an int or one int per block.
      tome_convention: ``"block"`` (whole block ``l`` at ``N_l`` tokens, the SPEC's number)
        or ``"merge"`` (MLP at the post-merge count ``N_{l+1}``).

    Returns:
      A :class:`MacReport`; ``dense_total`` is the same model dense without ToMe.

    Raises:
      ValueError: for an unknown convention, layer type or malformed pattern.
    """
    dims = vit_dims(config)
    patterns = dict(patterns or {})
    if tome_convention not in ("block", "merge"):
        raise ValueError(f"tome_convention: {tome_convention!r}; use 'block' or 'merge'.")
    for key in patterns:
        if key not in LAYER_TYPES and not key.startswith(("blocks.", "patch_embed", "head")):
            raise ValueError(f"patterns: unknown layer {key!r}; use {LAYER_TYPES} or timm names.")
    d, m = dims.hidden, dims.mlp
    rs = per_block_r(tome_r, dims.layers)
    sched = tome_schedule(dims.tokens, dims.layers + 1, (*rs, 0))
    rows = [
        _linear(
            "patch_embed.proj",
            "patch_embed",
            dims.patches,
            dims.patch_size**2 * dims.channels,
            d,
            patterns,
        )
    ]
    for i in range(dims.layers):
        n_attn = sched[i]
        n_mlp = sched[i + 1] if tome_convention == "merge" else sched[i]
        p = f"blocks.{i}"
        rows.append(_linear(f"{p}.attn.qkv", "qkv", n_attn, d, 3 * d, patterns))
        rows.append(
            LayerMacs(
                f"{p}.attn.matmuls",
                "attention",
                n_attn,
                d,
                n_attn,
                None,
                2 * n_attn * n_attn * d,
                2 * n_attn * n_attn * d,
            )
        )
        rows.append(_linear(f"{p}.attn.proj", "proj", n_attn, d, d, patterns))
        rows.append(_linear(f"{p}.mlp.fc1", "fc1", n_mlp, d, m, patterns))
        rows.append(_linear(f"{p}.mlp.fc2", "fc2", n_mlp, m, d, patterns))
    rows.append(_linear("head", "head", 1, d, dims.num_classes, patterns))
    n = dims.tokens
    dense_total = (
        dims.patches * dims.patch_size**2 * dims.channels * d
        + dims.layers * (n * (4 * d * d + 2 * d * m) + 2 * n * n * d)
        + d * dims.num_classes
    )
    return MacReport(tuple(rows), int(dense_total), float(sum(r.macs for r in rows)))
