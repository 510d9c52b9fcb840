"""The Marchenko–Pastur law and Tracy–Widom (GOE) quantiles; the fits live in :mod:`mpjax.mp.fits`.

Conventions (see `docs/method/mp-law.md`, Conventions):

* A layer is a matrix ``W`` of shape ``(d_out, d_in)`` with singular values ``s``;
  ``p = min(d_out, d_in)``, ``n = max(d_out, d_in)``, aspect ratio ``y = p / n <= 1``.
* The fits work on the eigenvalues ``lambda_i = s_i^2 / d_in`` (the papers' scale). The
  fitted MP scale ``sigma2`` lives on that scale; the per-entry noise variance is
  ``noise_var = sigma2 * d_in / n`` (equal to ``sigma2`` when ``d_out <= d_in``).
* The bulk edge is reported on the singular-value scale, ``sigma_plus = sqrt(d_in * lambda_plus)``
  (the normalisation cancels out of it). Spikes: ``s > sigma_plus``; bulk fraction: share of
  ``s < sigma_plus``.

The law itself (:func:`pdf`, :func:`cdf`, :func:`quantile`, :func:`edges`) takes a general
ratio ``c > 0``: for ``X = A^T A / N`` with ``A`` of iid entries of variance ``sigma2``
and ``c = M / N``, the density is ``sqrt((l+ - x)(x - l-)) / (2 pi c sigma2 x)`` on
``[l-, l+]``, ``l+- = sigma2 (1 +- sqrt c)^2``, plus an atom ``(1 - 1/c)_+`` at 0.

References:
  Berlyand et al., "Pruning DNNs via a Combination of the Marchenko–Pastur Distribution and
  Regularization" (arXiv 2503.01922); Ke, Ma & Lin, "Estimation of the number of spiked
  eigenvalues in a covariance matrix by bulk eigenvalue matching analysis" (JASA 2021);
  Gavish & Donoho, "The optimal hard threshold for singular values is 4/sqrt(3)" (2014);
  Johnstone, "On the distribution of the largest eigenvalue in PCA" (AoS 2001).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

__all__ = [
    "cdf",
    "edges",
    "pdf",
    "quantile",
    "singular_edges",
    "tw_cdf",
    "tw_quantile",
]


def _check_ratio(ratio: float) -> float:
    ratio = float(ratio)
    if not np.isfinite(ratio) or ratio <= 0:
        raise ValueError(f"ratio={ratio}: the MP aspect ratio must be a finite number > 0.")
    return ratio


def edges(ratio: float, sigma2: float = 1.0) -> tuple[float, float]:
    """Support edges ``(l-, l+) = sigma2 (1 -+ sqrt(ratio))^2`` on the eigenvalue scale.

    Examples:
      >>> edges(0.25)
      (0.25, 2.25)
    """
    root = np.sqrt(_check_ratio(ratio))
    return float(sigma2 * (1 - root) ** 2), float(sigma2 * (1 + root) ** 2)


def singular_edges(shape: tuple[int, int], sigma2: float = 1.0) -> tuple[float, float]:
    """MP edges on the singular-value scale for a ``(d_out, d_in)`` matrix.

    ``s+- = sqrt(d_in * sigma2 (1 +- sqrt y)^2)`` with ``y = p / n`` and ``sigma2`` on the
    ``s^2 / d_in`` scale. A matrix with iid ``N(0, v)`` entries has ``sigma2 = v n / d_in``
    and edges ``sqrt(v) (sqrt(n) -+ sqrt(p))``.

    Examples:
      >>> [round(e, 6) for e in singular_edges((3072, 768), sigma2=3072 / 768**2)]
      [1.0, 3.0]
    """
    d_out, d_in = (int(d) for d in shape)
    lo, hi = edges(min(d_out, d_in) / max(d_out, d_in), sigma2)
    return float(np.sqrt(d_in * lo)), float(np.sqrt(d_in * hi))


def pdf(x: np.ndarray | float, ratio: float, sigma2: float = 1.0) -> np.ndarray:
    """Continuous part of the MP density, ``sqrt((l+ - x)(x - l-)) / (2 pi c sigma2 x)``.

    For ``ratio > 1`` the atom ``1 - 1/ratio`` at 0 is not included (the continuous part
    then integrates to ``1 / ratio``).
    """
    c = _check_ratio(ratio)
    x = np.asarray(x, dtype=np.float64)
    lo, hi = edges(c, sigma2)
    inside = (x > lo) & (x < hi) & (x > 0)
    xs = np.where(inside, x, 0.5 * (lo + hi))  # double where: no 0/0 outside the support
    dens = np.sqrt((hi - xs) * (xs - lo)) / (2 * np.pi * c * sigma2 * xs)
    return np.where(inside, dens, 0.0)


def _cdf_le1(x: np.ndarray, y: float) -> np.ndarray:
    """Closed-form CDF of the standard (``sigma2 = 1``) MP law with ratio ``y <= 1``.

    ``F(x) = [pi y + sqrt((l+ - x)(x - l-)) - (1 + y) atan((r^2 - 1) / (2 r))
    + (1 - y) atan((l- r^2 - l+) / (2 (1 - y) r))] / (2 pi y)``, ``r = sqrt((l+ - x)/(x - l-))``;
    ``F = 0`` below ``l-`` and ``F = 1`` above ``l+``.
    """
    lo, hi = edges(y)
    inside = (x > lo) & (x < hi)
    xs = np.where(inside, x, 0.5 * (lo + hi))
    r = np.sqrt((hi - xs) / (xs - lo))
    val = np.pi * y + np.sqrt((hi - xs) * (xs - lo)) - (1 + y) * np.arctan((r**2 - 1) / (2 * r))
    if y < 1:  # the last term vanishes as y -> 1
        val = val + (1 - y) * np.arctan((lo * r**2 - hi) / (2 * (1 - y) * r))
    f = np.clip(val / (2 * np.pi * y), 0.0, 1.0)
    return np.where(x >= hi, 1.0, np.where(inside, f, 0.0))


def cdf(x: np.ndarray | float, ratio: float, sigma2: float = 1.0) -> np.ndarray:
    """MP cumulative distribution function (closed form), atom included for ``ratio > 1``.

    For ``ratio = c > 1`` the nonzero eigenvalues are ``c`` times an MP(1/c) law:
    ``F_c(x) = (1 - 1/c) + F_{1/c}(x / (c sigma2)) / c`` for ``x >= 0``.
    """
    c = _check_ratio(ratio)
    if sigma2 <= 0:
        raise ValueError(f"sigma2={sigma2}: the MP scale must be > 0.")
    x = np.asarray(x, dtype=np.float64) / sigma2
    if c <= 1:
        return _cdf_le1(x, c)
    return np.where(x >= 0, (1 - 1 / c) + _cdf_le1(x / c, 1 / c) / c, 0.0)


@functools.lru_cache(maxsize=256)
def _cdf_table(y: float, size: int = 2049) -> tuple[np.ndarray, np.ndarray]:
    """``(F, x)`` on a cosine grid over ``[l-, l+]`` (dense near the square-root edges)."""
    lo, hi = edges(y)
    x = lo + (hi - lo) * 0.5 * (1 - np.cos(np.linspace(0.0, np.pi, size)))
    return np.maximum.accumulate(_cdf_le1(x, y)), x


def _quantile_le1(q: np.ndarray, y: float) -> np.ndarray:
    """Standard MP quantile for ``y <= 1``: table interpolation + 3 safeguarded Newton steps."""
    f_tab, x_tab = _cdf_table(y)
    lo, hi = edges(y)
    x = np.interp(q, f_tab, x_tab)
    for _ in range(3):
        dens = pdf(x, y)
        step = np.where(dens > 1e-12, (_cdf_le1(x, y) - q) / np.where(dens > 1e-12, dens, 1.0), 0)
        x = np.clip(x - step, lo, hi)
    return np.where(q <= 0, lo, np.where(q >= 1, hi, x))


def quantile(q: np.ndarray | float, ratio: float, sigma2: float = 1.0) -> np.ndarray:
    """Inverse of :func:`cdf` (vectorised over ``q`` in ``[0, 1]``).

    Examples:
      >>> float(np.round(quantile(0.5, 1.0), 4))
      0.6528
    """
    c = _check_ratio(ratio)
    q = np.asarray(q, dtype=np.float64)
    if np.any((q < 0) | (q > 1) | ~np.isfinite(q)):
        raise ValueError("q: probabilities must lie in [0, 1].")
    if c <= 1:
        return sigma2 * _quantile_le1(q, c)
    atom = 1 - 1 / c
    inner = _quantile_le1(np.clip((q - atom) * c, 0.0, 1.0), 1 / c)
    return np.where(q <= atom, 0.0, sigma2 * c * inner)


# ---------------------------------------------------------------- Tracy–Widom (GOE, beta=1)


class _TW1Table(NamedTuple):
    s: np.ndarray
    cdf: np.ndarray
    sol: object


@functools.lru_cache(maxsize=1)
def _tw1_table() -> _TW1Table:
    """Tabulate ``F1`` by integrating Painlevé II backwards from the Airy tail.

    ``q'' = s q + 2 q^3`` with ``q(s) ~ Ai(s)`` as ``s -> inf`` (Hastings–McLeod);
    ``F1(s) = exp(-(1/2) int_s^inf q - (1/2) int_s^inf (x - s) q(x)^2 dx)``.
    The state carries ``J = int_s^inf q``, ``u = int_s^inf q^2`` and
    ``K = int_s^inf (x - s) q^2`` (``K' = -u``), so one ODE solve gives everything.
    """
    from scipy.integrate import quad, solve_ivp
    from scipy.special import airy

    s0, s1 = 8.0, -9.0
    ai, aip = airy(s0)[:2]
    j0 = quad(lambda x: airy(x)[0], s0, np.inf)[0]
    u0 = aip**2 - s0 * ai**2  # int_s^inf Ai^2 = Ai'(s)^2 - s Ai(s)^2
    k0 = quad(lambda x: (x - s0) * airy(x)[0] ** 2, s0, np.inf)[0]

    def rhs(s, state):
        q, dq, _, u, _ = state
        return [dq, s * q + 2 * q**3, -q, -(q**2), -u]

    sol = solve_ivp(
        rhs,
        (s0, s1),
        [ai, aip, j0, u0, k0],
        method="DOP853",
        rtol=1e-12,
        atol=1e-16,
        dense_output=True,
    )
    grid = np.linspace(s1, s0, 6001)
    _, _, j, _, k = sol.sol(grid)
    return _TW1Table(grid, np.maximum.accumulate(np.exp(-0.5 * (j + k))), sol.sol)


def tw_cdf(s: np.ndarray | float) -> np.ndarray:
    """CDF ``F1`` of the GOE Tracy–Widom law (tabulated on ``[-9, 8]``; 0/1 outside)."""
    tab = _tw1_table()
    return np.interp(np.asarray(s, dtype=np.float64), tab.s, tab.cdf, left=0.0, right=1.0)


def tw_quantile(prob: np.ndarray | float) -> np.ndarray:
    """Quantile ``F1^-1(prob)`` of the GOE Tracy–Widom law, vectorised.

    Table interpolation followed by Newton steps on the ODE's dense output
    (``F1' = F1 (q + u) / 2``); accurate to ~1e-8 for ``prob`` in ``[1e-6, 1 - 1e-9]``.

    Examples:
      >>> [round(float(tw_quantile(p)), 4) for p in (0.1, 0.5, 0.95)]
      [-2.7824, -1.2686, 0.9793]
    """
    prob = np.asarray(prob, dtype=np.float64)
    if np.any((prob <= 0) | (prob >= 1) | ~np.isfinite(prob)):
        raise ValueError("prob: Tracy–Widom quantile needs probabilities in (0, 1).")
    tab = _tw1_table()
    s = np.interp(prob, tab.cdf, tab.s)
    for _ in range(3):
        q, _, j, u, k = tab.sol(np.clip(s, tab.s[0], tab.s[-1]).ravel())
        f = np.exp(-0.5 * (j + k)).reshape(s.shape)
        dens = 0.5 * f * (q + u).reshape(s.shape)
        s = s - np.where(dens > 1e-14, (f - prob) / np.maximum(dens, 1e-14), 0.0)
    return s
