"""Multiply-accumulate (MAC) accounting of a Vision Transformer, dense, N:M-sparse and ToMe.

Conventions (see `docs/method/macs.md`): one MAC is one multiply-add.

* A linear layer applied to ``T`` tokens costs ``T * d_in * d_out`` MACs; with a k:n mask
  (``k`` of every ``n`` weights kept along ``d_in``) it costs ``k/n`` of that (half for 2:4).
* The two attention matmuls (``Q K^T`` and ``A V``) cost ``2 N^2 D`` MACs per block at ``N``
  tokens and width ``D``; they are never sparse.
* The patch embedding is a linear map of the ``N - 1`` patches, ``(N - 1) * p^2 C * D``;
  the head runs on the class token only, ``D * classes``.
* Softmax, LayerNorm, GELU, biases and the ToMe matching itself are not counted.
* ToMe (Bolya et al., ICLR 2023, arXiv:2210.09461) with ``r`` merges per block: block ``l``
  runs at ``N_l`` tokens of :func:`mpjax.arch.tokens.tome_schedule` (``197 - 8 l`` for
  ViT-B/16 at ``r = 8``; see `docs/method/tome.md`). The default ``tome_convention="block"``
  charges the whole block at ``N_l`` (the number the docs quote); ``"merge"`` charges the
  MLP at ``N_{l+1}``, since ToMe merges between attention and MLP.

With these terms ViT-B/16 at 224 px costs 17.564 GMAC dense and 7.059 GMAC with 2:4 on
qkv/proj/fc1/fc2 and ToMe ``r = 8``: a 59.81% reduction. (Without the head the dense number
would round to 17.563, without the patch embedding to 17.448: both terms are in.)

Which layers are sparse is the caller's input (``patterns``): the prune report
(:mod:`mpjax.pipeline.macs`) and the export (:mod:`mpjax.export`) derive it from the masks
actually applied, so a layer skipped or left out of ``--include`` counts dense, and an
unstructured mask changes no MAC count. Results are in MACs; reports print GMAC.

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
from collections.abc import Mapping, Sequence
from typing import Any

from mpjax.arch.patterns import DENSE, NMPattern, parse_pattern
from mpjax.arch.tokens import per_block_r, tome_schedule
from mpjax.arch.vit import LAYER_TYPES, vit_dims

__all__ = [
    "LayerMacs",
    "MacReport",
    "vit_macs",
]


@dataclasses.dataclass(frozen=True)
class LayerMacs:
    """The MACs of one linear layer (or one block's attention matmuls).

    Attributes:
      name: timm layer name (``"blocks.3.mlp.fc1"``; ``"blocks.3.attn.matmuls"``).
      layer_type: one of :data:`~mpjax.arch.vit.LAYER_TYPES` or ``"attention"``.
      tokens: tokens the layer runs on.
      d_in: input width.
      d_out: output width (for the attention matmuls: the token count).
      pattern: ``"k:n"`` of a sparse layer, ``None`` when dense.
      dense_macs: MACs without the pattern.
      macs: MACs with the pattern (``k/n`` of ``dense_macs``).
    """

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


def _pattern_for(patterns: Mapping[str, Any], name: str, layer_type: str) -> NMPattern | None:
    """The layer's pattern, or ``None`` when it is dense (``None`` or ``"dense"``).

    MAC accounting describes layers left dense as well as pruned ones, so it parses with
    ``allow_dense=True``: ``"dense"`` and ``k == n`` (e.g. ``"4:4"``) are accepted.
    """
    value = patterns.get(name, patterns.get(layer_type))
    if value is None or value == "dense":
        return None
    return parse_pattern(value, allow_dense=True)


def _linear(name: str, layer_type: str, tokens: int, d_in: int, d_out: int, patterns) -> LayerMacs:
    pattern = _pattern_for(patterns, name, layer_type)
    dense = tokens * d_in * d_out
    k, n = pattern or DENSE
    label = None if pattern is None else str(pattern)
    return LayerMacs(name, layer_type, tokens, d_in, d_out, label, dense, dense * k / n)


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
      tome_convention: ``"block"`` (whole block ``l`` at ``N_l`` tokens, the convention of
        `docs/method/macs.md`) or ``"merge"`` (MLP at the post-merge count ``N_{l+1}``).

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
