"""Fitting the Marchenko–Pastur bulk of a weight spectrum: BEMA, Gavish–Donoho, calibrated.

Conventions (see `docs/method/mp-law.md`, Conventions): a layer ``W`` of shape
``(d_out, d_in)`` has singular values ``s``;
``p = min(d_out, d_in)``, ``n = max(d_out, d_in)``, ``y = p / n``. Fits use the eigenvalues
``lambda_i = s_i^2 / d_in``; the fitted MP scale ``sigma2`` is on that scale and the per-entry
noise variance is ``noise_var = sigma2 * d_in / n``. The edge is reported on the singular-value
scale, ``sigma_plus = sqrt(d_in * lambda_plus)``. Spikes are ``s > sigma_plus``.

The law itself (:func:`pdf`, :func:`cdf`, :func:`quantile`, :func:`edges`,
:func:`singular_edges`, :func:`tw_cdf`, :func:`tw_quantile`) lives in :mod:`mpjax.mp.law`
and is re-exported here.

References:
  Berlyand et al., arXiv 2503.01922 (BEMA edge, mu_fit); Ke, Ma & Lin, JASA 2021 (BEMA);
  Gavish & Donoho, IEEE Trans. Inf. Theory 60 (2014) (optimal hard threshold);
  Johnstone, Ann. Statist. 29 (2001) (TW centring/scaling with the n - 1/2 corrections).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from mpjax.mp.law import cdf, edges, pdf, quantile, singular_edges, tw_cdf, tw_quantile

__all__ = [
    "MIN_DIM",
    "METHODS",
    "UNCOUNTED",
    "MPFit",
    "cdf",
    "check_options",
    "edges",
    "fit",
    "gavish_donoho_lambda",
    "gavish_donoho_omega",
    "hill_alpha",
    "pdf",
    "quantile",
    "singular_edges",
    "stable_rank",
    "tw_cdf",
    "tw_quantile",
]

#: Smallest ``min(d_out, d_in)`` a fit is attempted on; smaller layers get status "too_small".
MIN_DIM = 8
METHODS = ("bema", "gavish_donoho", "calibrated")
TW_FORMS = ("paper", "reference-code")
#: Singular values below ``ZERO_TOL * s_1`` count as numerically zero (float32 Gram path noise).
ZERO_TOL = 1e-3


#: ``MPFit.n_spikes`` of a spectrum that could not be counted (status ``"nonfinite"``).
UNCOUNTED = -1


class MPFit(NamedTuple):
    """Result of fitting the MP bulk of one layer.

    All numbers are finite, except for a spectrum with NaN/Inf entries (status
    ``"nonfinite"``): there every float field is NaN and ``n_spikes`` is
    :data:`UNCOUNTED` (``-1``), so no edge or count computed from garbage is ever reported.

    Attributes:
      sigma2: fitted MP scale on the ``lambda = s^2 / d_in`` scale.
      lambda_plus: bulk edge on the eigenvalue scale.
      edge: bulk edge on the singular-value scale, ``sigma_plus = sqrt(d_in * lambda_plus)``.
      fit_error: ``mu_fit``, max CDF deviation on the central window (1.0 when not fitted).
      bulk_fraction: share of the ``p`` singular values below ``edge``.
      n_spikes: number of singular values above ``edge`` (``-1`` when not countable).
      status: ``"ok"`` or ``"<reason>: <detail>"`` (too_small, all_zero, nonfinite,
        rank_deficient, fit_failed).
      method: the fit method used.
      shape: ``(d_out, d_in)``.
      noise_var: per-entry noise variance ``sigma2 * d_in / n``.
    """

    sigma2: float
    lambda_plus: float
    edge: float
    fit_error: float
    bulk_fraction: float
    n_spikes: int
    status: str
    method: str
    shape: tuple[int, int]
    noise_var: float

    @property
    def sigma_plus(self) -> float:
        """Alias of :attr:`edge` (the papers' name, sigma_plus)."""
        return self.edge

    @property
    def ok(self) -> bool:
        """True when the fit ran on a regular spectrum."""
        return self.status == "ok"


def _dims(shape: tuple[int, int]) -> tuple[int, int, int, int]:
    if len(shape) != 2 or any(int(d) < 0 for d in shape):
        raise ValueError(f"shape={shape}: expected (d_out, d_in) with non-negative ints.")
    d_out, d_in = (int(d) for d in shape)
    return d_out, d_in, min(d_out, d_in), max(d_out, d_in)


@functools.lru_cache(maxsize=512)
def _window_quantiles(p: int, n: int, alpha: float) -> np.ndarray:
    """Standard MP(y = p/n) quantiles at ``k / p`` for the BEMA window (cached per shape)."""
    k = np.arange(int(np.floor(alpha * p)), int(np.floor((1 - alpha) * p)))
    return quantile(k / p, p / n)


def _tw_edge_factor(y: float, n: int, t: float, tw_form: str) -> float:
    """``(1 + sqrt y)^2 + t n^(-2/3) y^(-1/6) g(y)``; ``g = (1 + sqrt y)^(4/3)`` (paper) or the
    reference code's ``(1 + sqrt y)^4 / 3``."""
    g = (1 + np.sqrt(y)) ** (4 / 3) if tw_form == "paper" else (1 + np.sqrt(y)) ** 4 / 3
    return float((1 + np.sqrt(y)) ** 2 + t * n ** (-2 / 3) * y ** (-1 / 6) * g)


def _fit_error(ev: np.ndarray, p: int, n: int, sigma2: float, alpha: float) -> float:
    """``mu_fit = max_j |F_MP(ev_j; y, sigma2) - (alpha + (1 - 2 alpha) j / |window|)|``."""
    window = ev[int(np.floor(alpha * p)) : int(np.floor((1 - alpha) * p))]
    if window.size == 0 or sigma2 <= 0:
        return 1.0
    target = alpha + (1 - 2 * alpha) * np.arange(window.size) / window.size
    return float(np.max(np.abs(cdf(window, p / n, sigma2) - target)))


def _bema_sigma2(ev: np.ndarray, p: int, n: int, alpha: float) -> float:
    """Least squares through the origin of window eigenvalues on MP quantiles."""
    q = _window_quantiles(p, n, alpha)
    window = ev[int(np.floor(alpha * p)) : int(np.floor((1 - alpha) * p))]
    return float(np.dot(q, window) / np.dot(q, q))


def gavish_donoho_lambda(y: float) -> float:
    """Known-noise optimal threshold ``lambda*(y)``; ``tau = lambda*(y) sqrt(n) sigma``.

    ``lambda*(y) = sqrt(2 (y + 1) + 8 y / ((y + 1) + sqrt(y^2 + 14 y + 1)))``.

    Examples:
      >>> round(gavish_donoho_lambda(1.0), 6) == round(4 / 3**0.5, 6)
      True
    """
    return float(np.sqrt(2 * (y + 1) + 8 * y / ((y + 1) + np.sqrt(y * y + 14 * y + 1))))


def gavish_donoho_omega(y: float, exact: bool = True) -> float:
    """Unknown-noise threshold coefficient: ``tau = omega(y) * median(s)``.

    Exact: ``omega(y) = lambda*(y) / sqrt(mu_y)`` with ``mu_y`` the median of the standard
    MP(y) law; approximate: ``0.56 y^3 - 0.95 y^2 + 1.82 y + 1.43``.

    Examples:
      >>> round(gavish_donoho_omega(1.0), 3)
      2.858
    """
    if not exact:
        return float(0.56 * y**3 - 0.95 * y**2 + 1.82 * y + 1.43)
    return gavish_donoho_lambda(y) / float(np.sqrt(quantile(0.5, y)))


def _degenerate(s: np.ndarray, shape: tuple[int, int], method: str, status: str) -> MPFit:
    """Fallback for spectra a fit cannot use: moment estimate ``sigma2 = mean(lambda)``
    (the MP mean) and the asymptotic edge; fit_error = 1.0 (not MP-like)."""
    d_out, d_in, p, n = _dims(shape)
    sigma2 = float(np.mean(s**2) / d_in) if p and d_in else 0.0
    lam_plus = sigma2 * (1 + np.sqrt(p / n)) ** 2 if p else 0.0
    edge = float(np.sqrt(d_in * lam_plus))
    n_spikes = int(np.sum(s > edge))
    bulk = float(np.mean(s < edge)) if p and edge > 0 else 1.0
    noise_var = sigma2 * d_in / n if n else 0.0
    return MPFit(
        sigma2,
        float(lam_plus),
        edge,
        1.0,
        bulk,
        n_spikes,
        status,
        method,
        (d_out, d_in),
        float(noise_var),
    )


def check_options(
    method: str = "bema",
    alpha: float = 0.25,
    beta: float = 0.8,
    tw_form: str = "paper",
    false_spike_rate: float = 0.05,
) -> None:
    """Raise ``ValueError`` naming the bad option of :func:`fit` (checked before any work)."""
    rate = false_spike_rate
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {METHODS}.")
    if not 0 <= alpha < 0.5:
        raise ValueError(f"alpha={alpha}: the BEMA window needs 0 <= alpha < 0.5.")
    if not 0 < beta < 1:
        raise ValueError(f"beta={beta}: the Tracy–Widom level must lie in (0, 1).")
    if tw_form not in TW_FORMS:
        raise ValueError(f"tw_form={tw_form!r}: expected one of {TW_FORMS}.")
    if not 0 < rate < 1:
        raise ValueError(f"false_spike_rate={rate}: must lie in (0, 1).")


def _screen(s: np.ndarray, p: int) -> str:
    """'' for a regular spectrum, else the degenerate status."""
    if not np.all(np.isfinite(s)):
        return "nonfinite: spectrum has NaN/Inf entries"
    if p < MIN_DIM:
        return f"too_small: min(d_out, d_in) = {p} < {MIN_DIM}"
    if s[0] <= 0:
        return "all_zero: every singular value is 0"
    return ""


def fit(
    singular_values: np.ndarray,
    shape: tuple[int, int],
    method: str = "bema",
    alpha: float = 0.25,
    beta: float = 0.8,
    tw_form: str = "paper",
    false_spike_rate: float = 0.05,
    noise_sigma: float | None = None,
    exact_omega: bool = True,
) -> MPFit:
    """Fit the MP bulk of one layer's spectrum and locate its edge.

    Methods:
      * ``"bema"`` (`docs/method/mp-law.md`, BEMA): ``sigma2 = sum q_k lambda_k / sum q_k^2`` over the window
        ``k in [alpha p, (1 - alpha) p)`` with ``q_k`` the MP(y) quantile at ``k / p``;
        ``lambda_plus = sigma2 [(1 + sqrt y)^2 + t n^(-2/3) y^(-1/6) (1 + sqrt y)^(4/3)]``,
        ``t = F_TW1^-1(1 - beta)`` (``tw_form="reference-code"`` uses ``(1 + sqrt y)^4 / 3``).
        ``beta`` is about the probability that pure noise shows >= 1 spike (0.8 by default).
      * ``"calibrated"``: BEMA's ``sigma2`` with Johnstone's finite-size TW edge
        ``lambda_plus = sigma2 (mu_np + t sigma_np) / n``, ``t = F_TW1^-1(1 - false_spike_rate)``,
        ``mu_np = (sqrt(n - 1/2) + sqrt(p - 1/2))^2``,
        ``sigma_np = sqrt(mu_np) (1/sqrt(n - 1/2) + 1/sqrt(p - 1/2))^(1/3)``: on pure noise
        ``P(n_spikes >= 1) ~ false_spike_rate``.
      * ``"gavish_donoho"``: ``tau = omega(y) median(s)``, or ``lambda*(y) sqrt(n) noise_sigma``
        when the per-entry noise std ``noise_sigma`` is known; ``edge = tau``.

    Args:
      singular_values: the ``p = min(d_out, d_in)`` singular values (any order).
      shape: ``(d_out, d_in)`` of the matrix view.
      method: ``"bema"``, ``"calibrated"`` or ``"gavish_donoho"``.
      alpha: BEMA window trim (also the fit-error window for every method).
      beta: BEMA Tracy–Widom level.
      tw_form: ``"paper"`` or ``"reference-code"``.
      false_spike_rate: target false-spike probability for ``"calibrated"``.
      noise_sigma: known per-entry noise std for Gavish–Donoho.
      exact_omega: Gavish–Donoho ``omega`` via the MP median (else the cubic fit).

    Returns:
      :class:`MPFit`; degenerate spectra (too small, all zero) get a status and the moment
      estimate instead of raising; a spectrum with NaN/Inf gets status ``"nonfinite"``, NaN
      in every float field and ``n_spikes = -1`` (:data:`UNCOUNTED`).

    Raises:
      ValueError: invalid options, or ``len(singular_values) != min(shape)``.

    Examples:
      >>> import numpy as np
      >>> w = np.random.default_rng(0).standard_normal((200, 400)) / 20.0
      >>> f = fit(np.linalg.svd(w, compute_uv=False), w.shape)
      >>> f.status, abs(f.noise_var / 0.0025 - 1) < 0.1
      ('ok', True)
    """
    check_options(method, alpha, beta, tw_form, false_spike_rate)
    d_out, d_in, p, n = _dims(shape)
    s = np.sort(np.abs(np.asarray(singular_values, dtype=np.float64)).ravel())[::-1]
    if s.size != p:
        raise ValueError(f"singular_values: got {s.size} values, expected min{shape} = {p}.")
    bad = _screen(s, p)
    if bad.startswith("nonfinite"):
        nan = float("nan")
        return MPFit(nan, nan, nan, nan, nan, UNCOUNTED, bad, method, (d_out, d_in), nan)
    if bad:
        return _degenerate(s, (d_out, d_in), method, bad)
    n_zero = int(np.sum(s <= ZERO_TOL * s[0]))
    status = f"rank_deficient: {n_zero} of {p} singular values ~0" if n_zero > 0.05 * p else "ok"
    ev = s[::-1] ** 2 / d_in  # ascending eigenvalues
    y = p / n
    if method == "gavish_donoho":
        sig = noise_sigma
        if sig is None:  # median(s)^2 / n estimates noise_var * median of MP(y)
            sig = float(np.median(s) / np.sqrt(n * quantile(0.5, y)))
            tau = gavish_donoho_omega(y, exact_omega) * float(np.median(s))
        else:
            if not (np.isfinite(sig) and sig > 0):
                raise ValueError(f"noise_sigma={sig}: the known noise std must be > 0.")
            tau = gavish_donoho_lambda(y) * np.sqrt(n) * float(sig)
        sigma2, lam_plus = sig**2 * n / d_in, tau**2 / d_in
    else:
        sigma2 = _bema_sigma2(ev, p, n, alpha)
        if not sigma2 > 0:
            why = "rank_deficient" if n_zero > 0.05 * p else "fit_failed"
            return _degenerate(
                s,
                (d_out, d_in),
                method,
                f"{why}: {n_zero} of {p} singular "
                "values ~0 fill the BEMA window; moment estimate used",
            )
        if method == "bema":
            lam_plus = sigma2 * _tw_edge_factor(y, n, float(tw_quantile(1 - beta)), tw_form)
        else:
            a, b = np.sqrt(n - 0.5), np.sqrt(p - 0.5)
            mu, sd = (a + b) ** 2, (a + b) * (1 / a + 1 / b) ** (1 / 3)
            lam_plus = sigma2 * (mu + float(tw_quantile(1 - false_spike_rate)) * sd) / n
    lam_plus = max(float(lam_plus), 0.0)
    edge = float(np.sqrt(d_in * lam_plus))
    return MPFit(
        sigma2=float(sigma2),
        lambda_plus=lam_plus,
        edge=edge,
        fit_error=_fit_error(ev, p, n, sigma2, alpha),
        bulk_fraction=float(np.mean(s < edge)),
        n_spikes=int(np.sum(s > edge)),
        status=status,
        method=method,
        shape=(d_out, d_in),
        noise_var=float(sigma2 * d_in / n),
    )


def hill_alpha(s: np.ndarray, k: int = 20) -> float | None:
    """Hill tail exponent of ``e_i = s_i^2`` (sorted descending).

    ``alpha_Hill = 1 + 1 / mean_{i < k} log(e_i / e_k)`` with ``k`` capped at ``p - 1``.

    Returns:
      the exponent, or ``None`` when undefined (fewer than 2 values, ``e_k = 0``, or a flat
      top of the spectrum).

    Examples:
      >>> round(hill_alpha(np.array([4.0, 2.0, 1.0]), k=2), 4)
      1.4809
    """
    e = np.sort(np.asarray(s, dtype=np.float64).ravel() ** 2)[::-1]
    k = min(int(k), e.size - 1)
    if k < 1 or not np.all(np.isfinite(e)) or e[k] <= 0:
        return None
    m = float(np.mean(np.log(e[:k] / e[k])))
    return 1.0 + 1.0 / m if m > 0 else None


def stable_rank(s: np.ndarray) -> float:
    """Stable rank ``sum_i s_i^2 / s_1^2`` (0.0 for an all-zero spectrum).

    Examples:
      >>> stable_rank(np.array([2.0, 1.0, 1.0]))
      1.5
    """
    e = np.asarray(s, dtype=np.float64).ravel() ** 2
    top = float(np.max(e)) if e.size else 0.0
    return float(np.sum(e) / top) if top > 0 and np.isfinite(top) else 0.0
