"""Float64 host arithmetic shared by the certificate modules.

Certificates compare small differences of large sums, so they are computed in numpy float64
on the host, never in the float32 of the model. These helpers are private to
:mod:`mpjax.certificates`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Array = Any


def f64(a: Array) -> np.ndarray:
    """``a`` as a float64 numpy array."""
    return np.asarray(a, np.float64)


def sq_norm(a: Array, w: Array | None = None) -> float:
    """``sum_ij w_ij a_ij^2`` (``||a||_F^2`` without weights), in float64."""
    sq = np.square(f64(a))
    return float(np.sum(sq if w is None else f64(w) * sq))


def l1_norm(a: Array, w: Array | None = None) -> float:
    """``sum_ij w_ij |a_ij|`` (the entrywise ``||a||_1`` without weights), in float64."""
    ab = np.abs(f64(a))
    return float(np.sum(ab if w is None else f64(w) * ab))


def disjoint_supports(*mats: Array) -> bool:
    """Whether the nonzero patterns of ``mats`` are pairwise disjoint (``S o R = 0``)."""
    supports = [f64(m) != 0 for m in mats]
    return all(not np.any(a & b) for i, a in enumerate(supports) for b in supports[i + 1 :])
