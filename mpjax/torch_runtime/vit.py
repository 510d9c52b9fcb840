"""A plain-PyTorch Vision Transformer with token merging (ToMe), in timm's parameter names.

The module tree matches timm's ``VisionTransformer`` (``patch_embed.proj``, ``cls_token``,
``pos_embed``, ``blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``,
``head``), so an mpjax export (:mod:`mpjax.export`) loads with ``load_state_dict``. The
numerics follow the Flax model (:mod:`mpjax.models.vit`): pre-LayerNorm blocks, class-token
pooling, LayerNorm ``eps`` and GELU form taken from the export's config.

ToMe (Bolya et al., "Token Merging: Your ViT but Faster", ICLR 2023, arXiv:2210.09461; see
`docs/method/tome.md`) runs between the attention and the MLP of every block:

1. metric ``m_t`` = the token's keys averaged over heads, normalised to unit length;
2. tokens alternate into sets A (even positions, incl. the class token) and B (odd);
3. each ``a in A`` finds its most similar ``b in B`` (cosine ``m_a . m_b``); the class token
   scores ``-inf`` so it is never merged;
4. the ``r`` A-tokens with the highest scores are merged into their partners by the
   size-weighted mean ``x_b <- (s_b x_b + sum_a s_a x_a) / (s_b + sum_a s_a)``, sizes add;
5. output order: unmerged A-tokens in their original order (class token first), then B.

Attention is proportional: ``softmax(q k^T / sqrt(d_h) + log s_k)`` over keys ``k``.
Block ``l`` merges ``min(r, (N_l - 1) // 2)`` tokens (:func:`mpjax.arch.tome_merges`), so
shapes are static per ``(r, N)``. The algorithm is the one of the Flax model
(:mod:`mpjax.models.tome`), written again in torch: this module imports no JAX.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mpjax.arch import ViTDims, per_block_r, tome_merges


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (timm layout)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"heads: width {dim} is not divisible by {heads} heads.")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, size: torch.Tensor | None):
        """``x`` (B, N, D), ``size`` (B, N, 1) or None -> (output, key metric (B, N, d_h))."""
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        bias = None
        if size is not None:
            bias = size.log().to(q.dtype).reshape(b, 1, 1, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = out.transpose(1, 2).reshape(b, n, d)
        return self.proj(out), k.mean(dim=1)


class Mlp(nn.Module):
    """``fc2(gelu(fc1(x)))``."""

    def __init__(self, dim: int, hidden: int, gelu_approximate: str):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.gelu_approximate = gelu_approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate=self.gelu_approximate))


def bipartite_soft_matching(metric: torch.Tensor, r: int):
    """Indices of ToMe's merge: ``(unmerged A, merged A, their B partners)``.

    Args:
      metric: (B, N, C) per-token matching features (keys averaged over heads).
      r: merges wanted; clipped to ``(N - 1) // 2``.

    Returns:
      ``(unm_idx (B, |A|-r), src_idx (B, r), dst_idx (B, r))``, indices into A and B.
    """
    r = tome_merges(metric.shape[1], r)
    metric = metric / metric.norm(dim=-1, keepdim=True)
    a, b = metric[:, ::2], metric[:, 1::2]
    scores = a @ b.transpose(-1, -2)
    scores[:, 0, :] = -math.inf  # the class token is never merged
    node_max, node_idx = scores.max(dim=-1)
    order = node_max.argsort(dim=-1, descending=True, stable=True)
    src_idx = order[:, :r]
    unm_idx = order[:, r:].sort(dim=-1).values
    dst_idx = node_idx.gather(1, src_idx)
    return unm_idx, src_idx, dst_idx


def merge_tokens(x: torch.Tensor, size: torch.Tensor, metric: torch.Tensor, r: int):
    """Size-weighted ToMe merge of ``r`` token pairs; returns ``(x, size)`` with N - r tokens."""
    unm_idx, src_idx, dst_idx = bipartite_soft_matching(metric, r)
    if src_idx.shape[1] == 0:
        return x, size
    xs = torch.cat([x * size, size], dim=-1)
    a, b = xs[:, ::2], xs[:, 1::2]
    c = xs.shape[-1]
    unm = a.gather(1, unm_idx[..., None].expand(-1, -1, c))
    src = a.gather(1, src_idx[..., None].expand(-1, -1, c))
    b = b.scatter_reduce(1, dst_idx[..., None].expand(-1, -1, c), src, reduce="sum")
    merged = torch.cat([unm, b], dim=1)
    new_size = merged[..., -1:]
    return merged[..., :-1] / new_size, new_size


class Block(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln1 x)``, ToMe merge, ``x + mlp(ln2 x)``."""

    def __init__(self, dims: ViTDims, ln_eps: float, gelu_approximate: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(dims.hidden, eps=ln_eps)
        self.attn = Attention(dims.hidden, dims.heads)
        self.norm2 = nn.LayerNorm(dims.hidden, eps=ln_eps)
        self.mlp = Mlp(dims.hidden, dims.mlp, gelu_approximate)

    def forward(self, x: torch.Tensor, size: torch.Tensor | None, r: int):
        y, metric = self.attn(self.norm1(x), size)
        x = x + y
        if r > 0:
            x, size = merge_tokens(x, size, metric, r)
        return x + self.mlp(self.norm2(x)), size


class TorchViT(nn.Module):
    """ViT classifier in timm layout; ``forward(images NCHW) -> logits``.

    Args:
      dims: model sizes (:class:`mpjax.arch.ViTDims`).
      ln_eps: LayerNorm epsilon (Flax and timm ViTs use 1e-6).
      gelu_approximate: ``"none"`` (exact erf, as :mod:`mpjax.models.vit` and timm) or
        ``"tanh"``.
      tome_r: ToMe merges per block (0 = off), an int or one int per block; may be changed
        later via ``self.tome_r``.
    """

    def __init__(
        self,
        dims: ViTDims,
        ln_eps: float = 1e-6,
        gelu_approximate: str = "none",
        tome_r: int | Sequence[int] = 0,
    ):
        super().__init__()
        if gelu_approximate not in ("tanh", "none"):
            raise ValueError(f"gelu_approximate: {gelu_approximate!r}; use 'tanh' or 'none'.")
        self.dims = dims
        self.tome_r = tome_r
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(
            dims.channels, dims.hidden, dims.patch_size, stride=dims.patch_size
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims.hidden))
        self.pos_embed = nn.Parameter(torch.randn(1, dims.tokens, dims.hidden) * 0.02)
        self.blocks = nn.ModuleList(
            [Block(dims, ln_eps, gelu_approximate) for _ in range(dims.layers)]
        )
        self.norm = nn.LayerNorm(dims.hidden, eps=ln_eps)
        self.head = nn.Linear(dims.hidden, dims.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` (B, C, H, W) -> logits (B, classes), class-token pooled."""
        x = self.patch_embed.proj(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        rs = per_block_r(self.tome_r, len(self.blocks))
        size = x.new_ones(x.shape[0], x.shape[1], 1) if any(rs) else None
        for block, r in zip(self.blocks, rs, strict=True):
            x, size = block(x, size, r)
        return self.head(self.norm(x[:, 0]))


def linear_names(model: TorchViT, types: tuple[str, ...] = ("qkv", "proj", "fc1", "fc2")):
    """timm names of the block Linears of the given types, e.g. ``blocks.0.attn.qkv``."""
    return [
        name
        for name, _ in model.named_modules()
        if name.startswith("blocks.") and name.rsplit(".", 1)[-1] in types
    ]
