"""Token merging (ToMe; Bolya et al., ICLR 2023) with static shapes for ``jit``.

In each ViT block, after the attention residual, ToMe merges ``r`` pairs of tokens:

1. split the ``T`` tokens alternately into ``A`` (even positions) and ``B`` (odd);
   the class token (position 0, in ``A``) is protected: it never merges;
2. similarity ``S_ab = cos(k_a, k_b)`` of the attention keys averaged over heads;
3. every ``a`` picks its most similar ``b``; the ``r`` best-scoring ``a`` are merged
   into their ``b`` by the size-weighted average ``x_b <- (s_b x_b + s_a x_a)/(s_b + s_a)``
   (several ``a`` may land on one ``b``), and sizes add: ``s_b <- s_b + s_a``;
4. the result is ``[unmerged A (in their original order, class token first), B]``.

Attention then uses *proportional attention*: ``softmax(q k^T / sqrt(d) + log s)``, so a
merged token counts as the ``s`` tokens it stands for.

Because ``r`` is a Python int, every shape is static. With ``r`` per block the token
counts are ``T_0 = T`` and ``T_{l+1} = T_l - r_l`` where ``r_l = min(r, (T_l - 1) // 2)``
(:func:`mpjax.arch.tome_merges`; the whole schedule is :func:`mpjax.arch.tome_schedule`, and
:func:`mpjax.models.vit.token_counts` for a config): block ``l``'s attention runs on ``T_l``
tokens and its MLP on ``T_{l+1}``. For ViT-B/16 (``T = 197``, 12 blocks) and ``r = 8``:
attention sees 197, 189, ..., 109 tokens and the class token leaves the last block with 101
tokens around it. See `docs/method/tome.md`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mpjax import arch


class Matching(NamedTuple):
    """Indices of one bipartite soft matching (all ``[B, .]`` int arrays into ``A`` or ``B``).

    Attributes:
      unm_idx: ``[B, T_A - r]`` unmerged ``A`` tokens, ascending (class token first).
      src_idx: ``[B, r]`` ``A`` tokens that merge away.
      dst_idx: ``[B, r]`` the ``B`` token each ``src_idx`` merges into.
    """

    unm_idx: jax.Array
    src_idx: jax.Array
    dst_idx: jax.Array


def bipartite_soft_matching(metric: jax.Array, r: int, class_token: bool = True) -> Matching:
    """Match the ``r`` most similar ``A -> B`` pairs by cosine similarity of ``metric``.

    Args:
      metric: ``[B, T, C]`` (keys averaged over heads).
      r: number of merges; must already satisfy ``r <= (T - class_token) // 2``.
      class_token: protect token 0.
    """
    norm = jnp.linalg.norm(metric, axis=-1, keepdims=True)
    m = metric / jnp.maximum(norm, jnp.finfo(metric.dtype).tiny)
    a, b = m[:, ::2], m[:, 1::2]
    scores = jnp.einsum("bic,bjc->bij", a, b)
    if class_token:
        scores = scores.at[:, 0, :].set(-jnp.inf)
    node_max, node_idx = scores.max(axis=-1), scores.argmax(axis=-1)
    edge_idx = jnp.argsort(-node_max, axis=-1)  # best matches first; class token last
    src_idx = edge_idx[:, :r]
    return Matching(
        unm_idx=jnp.sort(edge_idx[:, r:], axis=-1),
        src_idx=src_idx,
        dst_idx=jnp.take_along_axis(node_idx, src_idx, axis=-1),
    )


def merge(x: jax.Array, matching: Matching) -> jax.Array:
    """Sum-merge ``x [B, T, C]`` along a matching: ``[B, T - r, C]``."""
    src, dst = x[:, ::2], x[:, 1::2]
    unm = jnp.take_along_axis(src, matching.unm_idx[..., None], axis=1)
    moved = jnp.take_along_axis(src, matching.src_idx[..., None], axis=1)
    dst = jax.vmap(lambda d, i, s: d.at[i].add(s))(dst, matching.dst_idx, moved)
    return jnp.concatenate([unm, dst], axis=1)


def merge_tokens(
    x: jax.Array, size: jax.Array, metric: jax.Array, r: int, class_token: bool = True
) -> tuple[jax.Array, jax.Array]:
    """One ToMe step: size-weighted merge of ``r`` token pairs.

    Args:
      x: ``[B, T, D]`` tokens.
      size: ``[B, T, 1]`` how many input patches each token stands for.
      metric: ``[B, T, C]`` similarity features (keys averaged over heads).
      r: requested merges (clipped by :func:`mpjax.arch.tome_merges`).

    Returns:
      ``(x', size')`` of ``T - r_eff`` tokens; ``x'_b = sum s_i x_i / sum s_i`` over the
      tokens merged into ``b``.
    """
    r = arch.tome_merges(x.shape[1], r, protected=int(class_token))
    if r == 0:
        return x, size
    matching = bipartite_soft_matching(metric, r, class_token)
    new_size = merge(size, matching)
    new_x = merge(x * size, matching) / new_size
    return new_x.astype(x.dtype), new_size
