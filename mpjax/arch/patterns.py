"""N:M sparsity patterns: one typed value and one parser for the whole package.

An N:M pattern ``k:n`` keeps ``k`` weights of every ``n`` consecutive inputs (along
``d_in`` of the ``(d_out, d_in)`` matrix view), so its sparsity is ``1 - k/n``. Pruning
needs a real cut (``0 < k < n``); MAC accounting and exports also describe layers left
dense, which they write ``"dense"`` or ``n:n`` and ask for with ``allow_dense=True``.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "DENSE",
    "NMPattern",
    "parse_pattern",
]


class NMPattern(NamedTuple):
    """Keep ``k`` of every ``n`` consecutive inputs (a ``NamedTuple``: ``k, n = pattern``).

    Examples:
      >>> p = parse_pattern("2:4")
      >>> p.k, p.n, p.sparsity, str(p)
      (2, 4, 0.5, '2:4')
    """

    k: int
    n: int

    @property
    def sparsity(self) -> float:
        """Fraction of weights removed, ``1 - k/n``."""
        return 1.0 - self.k / self.n

    @property
    def density(self) -> float:
        """Fraction of weights kept, ``k/n``."""
        return self.k / self.n

    @property
    def is_dense(self) -> bool:
        """True when nothing is removed (``k == n``)."""
        return self.k == self.n

    def __str__(self) -> str:
        return f"{self.k}:{self.n}"


#: The pattern that removes nothing, as ``parse_pattern("dense", allow_dense=True)`` returns it.
DENSE = NMPattern(1, 1)


def parse_pattern(
    spec: str | tuple[int, int] | NMPattern, *, allow_dense: bool = False
) -> NMPattern:
    """Read ``"K:N"`` (or a ``(k, n)`` pair) as an :class:`NMPattern`.

    Args:
      spec: ``"2:4"``, ``(2, 4)`` or an :class:`NMPattern`; with ``allow_dense`` also
        ``"dense"``, which reads as ``1:1``.
      allow_dense: accept ``k == n`` and ``"dense"`` (patterns that remove nothing), as MAC
        accounting and exports need; pruning leaves it ``False``.

    Raises:
      ValueError: when ``spec`` is not of the form ``K:N`` with ``0 < K < N`` (``<= N``
        with ``allow_dense``); the message names the value and the fix.

    Examples:
      >>> parse_pattern("8:16")
      NMPattern(k=8, n=16)
      >>> parse_pattern("dense", allow_dense=True).is_dense
      True
      >>> parse_pattern("4:4")
      Traceback (most recent call last):
      ...
      ValueError: pattern='4:4': need 0 < K < N (K:N keeps K of every N inputs), e.g. '2:4'.
    """
    if allow_dense and isinstance(spec, str) and spec == "dense":
        return DENSE
    try:
        if isinstance(spec, str):
            k, n = (int(x) for x in spec.split(":"))
        else:
            k, n = (int(x) for x in spec)
    except (ValueError, TypeError):
        raise ValueError(
            f"pattern={spec!r}: expected 'K:N' like '2:4' or '8:16'"
            + (" (or 'dense')." if allow_dense else ".")
        ) from None
    ok = 0 < k <= n if allow_dense else 0 < k < n
    if not ok:
        bound = "K <= N" if allow_dense else "K < N"
        raise ValueError(
            f"pattern={spec!r}: need 0 < {bound} (K:N keeps K of every N inputs), e.g. '2:4'."
        )
    return NMPattern(k, n)
