"""The one ToMe token schedule: how many tokens each ViT block sees under token merging.

ToMe (Bolya et al., "Token Merging: Your ViT but Faster", ICLR 2023, arXiv:2210.09461)
merges ``r`` tokens per block by bipartite matching, which can merge at most half of the
tokens that are not protected (the class token). Block ``l`` runs at ``N_l`` tokens with

    N_0 = N,   N_{l+1} = N_l - min(r_l, (N_l - protected) // 2),

i.e. ``197 - 8 l`` for ViT-B/16 at ``r = 8``. The Flax model (:mod:`mpjax.models.tome`),
the torch runtime and MAC accounting all use these functions. See `docs/method/tome.md`.
Pure Python: no JAX, no torch.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

__all__ = [
    "per_block_r",
    "tome_merges",
    "tome_schedule",
]


def per_block_r(r: int | Sequence[int], layers: int) -> tuple[int, ...]:
    """ToMe ``r`` as one int per block (an int applies to every block).

    Args:
      r: merges per block, an int ``>= 0`` or a sequence of ``layers`` ints ``>= 0``.
      layers: number of blocks.

    Returns:
      ``layers`` ints.

    Raises:
      ValueError: a negative ``r`` or a sequence whose length is not ``layers``.

    Examples:
      >>> per_block_r(8, 3), per_block_r((0, 16, 8), 3)
      ((8, 8, 8), (0, 16, 8))
    """
    rs = (int(r),) * layers if isinstance(r, numbers.Integral) else tuple(int(v) for v in r)
    if len(rs) != layers or any(v < 0 for v in rs):
        raise ValueError(f"tome_r: {r!r}; need an int >= 0 or {layers} ints >= 0, one per block.")
    return rs


def tome_merges(tokens: int, r: int, protected: int = 1) -> int:
    """Merges one block makes when asked for ``r``: ``min(r, (tokens - protected) // 2)``.

    Bipartite matching pairs each unprotected token of set A (even positions) with one of
    set B (odd positions), so at most half of the unprotected tokens can merge away.

    Args:
      tokens: tokens entering the block.
      r: merges requested (``<= 0`` means none).
      protected: tokens that never merge (1: the class token).

    Examples:
      >>> tome_merges(197, 8), tome_merges(17, 100), tome_merges(3, 5), tome_merges(1, 5)
      (8, 8, 1, 0)
    """
    return max(0, min(int(r), (int(tokens) - int(protected)) // 2))


def tome_schedule(
    tokens: int, layers: int, r: int | Sequence[int], protected: int = 1
) -> tuple[int, ...]:
    """Tokens entering each of ``layers`` blocks under ToMe with ``r`` merges per block.

    ``N_0 = tokens`` and ``N_{l+1} = N_l - min(r_l, (N_l - protected) // 2)``. Ask for
    ``layers + 1`` entries with a final ``r`` of 0 to also get the count leaving the last
    block.

    Args:
      tokens: tokens entering the first block (patches plus the class token).
      layers: number of entries (blocks).
      r: merges per block, an int or one int per block (see :func:`per_block_r`).
      protected: tokens that never merge (1: the class token).

    Returns:
      ``layers`` token counts ``(N_0, ..., N_{layers-1})``.

    Raises:
      ValueError: as :func:`per_block_r`.

    Examples:
      >>> tome_schedule(197, 4, 8)
      (197, 189, 181, 173)
      >>> tome_schedule(197, 3, (0, 16, 8))
      (197, 197, 181)
      >>> tome_schedule(17, 5, (4, 4, 4, 4, 0))  # 4 blocks plus the count leaving the last
      (17, 13, 9, 5, 3)
    """
    out, n = [], int(tokens)
    for r_l in per_block_r(r, layers):
        out.append(n)
        n -= tome_merges(n, r_l, protected)
    return tuple(out)
