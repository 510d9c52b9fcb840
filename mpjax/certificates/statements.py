"""The statements of [P26] built on the data-path bound ``B_T(R)``.

A layer ``A = S + R`` (``S`` kept, ``R`` removed) moves along ``A_theta = S + theta R``;
``B_T(R)`` is the :class:`~mpjax.certificates.bounds.PathBound` of
:mod:`mpjax.certificates.bounds`. The statements, numbered as in
``docs/method/certificates.md``:

1. CE path bound (:func:`~mpjax.certificates.bounds.path_bound`);
2. margins (:func:`margin_certificate`);
3. zero bound (:func:`~mpjax.certificates.bounds.is_zero_bound`);
4. elastic-net mask certificate (:func:`elastic_net_certificate`);
5. additive Frobenius (:func:`frobenius_certificate`);
6. prune-restore (:func:`prune_restore`);
7. one-sided stationarity (:func:`stationarity_bound`);
8. multi-layer telescoping (:func:`telescope`);
9. Gaussian sufficient condition (:func:`~mpjax.certificates.bounds.gaussian_path_bound`);
10. entrywise threshold support recovery (:func:`threshold_support`).

Each result carries ``hypotheses_hold``; a bound built from a sampled Jacobian (no provable
``L_s``) has ``provable=False`` and never certifies anything.

References:
  [P26] Berlyand, Bourdais, Owhadi, Shmalo et al., "Pruning DNNs via the Marchenko-Pastur
  Distribution" (arXiv 2606.02608), Sec. "Certificates" (corollaries of the data-path bound).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from mpjax.certificates._arithmetic import disjoint_supports, f64, l1_norm, sq_norm
from mpjax.certificates.bounds import PathBound, data_path_bound
from mpjax.certificates.objectives import predicted_margin, true_margin

Array = Any

__all__ = [
    "MarginCertificate",
    "margin_certificate",
    "ElasticNetCertificate",
    "elastic_net_certificate",
    "frobenius_certificate",
    "PruneRestore",
    "prune_restore",
    "Stationarity",
    "stationarity_eps",
    "stationarity_bound",
    "TelescopedBound",
    "telescope",
    "support_threshold",
    "threshold_support",
]


class MarginCertificate(NamedTuple):
    """Statement 2: which samples keep their predicted label along the path.

    Attributes:
      eta: ``(1 - theta) L_s ||R psi1(s)||_inf`` per sample.
      margin: dense predicted margin ``z_top - max_{j != top} z_j``.
      certified: ``margin > 2 eta`` (label provably unchanged for every ``theta' >= theta``).
      share: mean of ``certified``.
      accuracy_change_bound: share of samples with ``|true margin| <= 2 eta`` (NaN without
        labels); ``|acc(A_theta) - acc(A_1)|`` is at most this.
      hypotheses_hold: the bound is provable.
    """

    eta: Array
    margin: Array
    certified: Array
    share: Array
    accuracy_change_bound: Array
    hypotheses_hold: bool


def margin_certificate(
    logits: Array, bound: PathBound, theta: float = 0.0, labels: Array | None = None
) -> MarginCertificate:
    """Samples whose label provably survives moving from ``A_1`` (dense logits) to ``A_theta``.

    Every logit moves by at most ``eta_s`` so each gap ``z_top - z_j`` shrinks by at most
    ``2 eta_s``. A tie (margin 0) is never certified.

    Args:
      logits: dense logits ``(|T|, classes)``.
      bound: the :class:`~mpjax.certificates.bounds.PathBound` of the removed part.
      theta: the point of the path compared with ``theta = 1``.
      labels: integer labels; without them ``accuracy_change_bound`` is NaN.
    """
    predicted_margin(logits) if labels is None else true_margin(logits, labels)  # validates
    z = f64(logits)
    eta = (1.0 - theta) * f64(bound.eta)
    top2 = np.sort(z, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]  # float64, as every certificate number
    certified = margin > 2.0 * eta
    if labels is None:
        acc_bound = float("nan")
    else:
        y = np.asarray(labels)
        rows = np.arange(len(z))
        others = z.copy()
        others[rows, y] = -np.inf
        true = z[rows, y] - np.max(others, axis=1)
        acc_bound = float(np.mean(np.abs(true) <= 2.0 * eta))
    return MarginCertificate(
        eta, margin, certified, float(np.mean(certified)), acc_bound, bound.provable
    )


class ElasticNetCertificate(NamedTuple):
    """Statements 4 and 5: the (elastic-net or additive-Frobenius) mask certificate.

    Attributes:
      path_bound: ``B_T(R)``.
      l2_term: ``l2 ||R||_F^2`` (weighted if weights were given).
      l1_term: ``l1 ||R||_1`` (0 for the additive-Frobenius form).
      cross_term: ``2 l2 <S, R>`` (0 under the disjoint-support hypothesis).
      slack: ``l2_term + l1_term + cross_term - path_bound``; removal certified iff ``> 0``.
      certified: ``slack > 0`` and the hypotheses hold.
      disjoint: ``S o R = 0``.
      hypotheses_hold: provable bound (and disjoint supports for statement 4).
    """

    path_bound: Array
    l2_term: Array
    l1_term: Array
    cross_term: Array
    slack: Array
    certified: bool
    disjoint: bool
    hypotheses_hold: bool

    def bound(self, theta: Array | float) -> Array:
        """Upper bound of ``J(A_theta) - J(A_1)``:
        ``(1-theta) B_T - (1-theta^2) l2||R||^2 - (1-theta) (l1||R||_1 + 2 l2 <S,R>)``."""
        t = f64(theta)
        return (
            (1 - t) * self.path_bound
            - (1 - t**2) * self.l2_term
            - (1 - t) * (self.l1_term + self.cross_term)
        )


def _certificate(bound, l2_term, l1_term, cross, disjoint, hyp) -> ElasticNetCertificate:
    slack = l2_term + l1_term + cross - bound.bound
    ok = bool(hyp and bound.provable)
    return ElasticNetCertificate(
        bound.bound, l2_term, l1_term, cross, slack, bool(ok and slack > 0), disjoint, ok
    )


def elastic_net_certificate(
    s: Array,
    r: Array,
    bound: PathBound,
    l1: float,
    l2: float,
    w1: Array | None = None,
    w2: Array | None = None,
) -> ElasticNetCertificate:
    """Statement 4 for ``J = CE + l2 ||A||_F^2 + l1 ||A||_1`` and a mask split ``S o R = 0``.

    With disjoint supports ``||A_theta||_F^2 = ||S||^2 + theta^2 ||R||^2`` and
    ``||A_theta||_1 = ||S||_1 + theta ||R||_1``, so with statement 1
    ``J(A_theta) - J(A_1) <= (1-theta) B_T - l2 (1-theta^2) ||R||_F^2 - l1 (1-theta) ||R||_1``;
    removal (``theta = 0``) lowers ``J`` when ``B_T(R) < l2 ||R||_F^2 + l1 ||R||_1``.
    Per-entry weights ``w2``/``w1`` give the weighted norms ``sum w R^2``, ``sum w |R|``.

    Raises:
      ValueError: if ``s`` and ``r`` have different shapes.
    """
    if jnp.shape(s) != jnp.shape(r):
        raise ValueError(f"S and R: shapes {jnp.shape(s)} and {jnp.shape(r)} differ.")
    disjoint = disjoint_supports(s, r)
    return _certificate(bound, l2 * sq_norm(r, w2), l1 * l1_norm(r, w1), 0.0, disjoint, disjoint)


def frobenius_certificate(s: Array, r: Array, bound: PathBound, l2: float) -> ElasticNetCertificate:
    """Statement 5 for ``J2 = CE + l2 ||A||_F^2`` with any split ``A = S + R`` (no mask needed):
    ``J2(A_theta) - J2(A_1) <= (1-theta) B_T - l2 (1-theta^2) ||R||^2 - 2 l2 (1-theta) <S, R>``.

    Raises:
      ValueError: if ``s`` and ``r`` have different shapes.
    """
    if jnp.shape(s) != jnp.shape(r):
        raise ValueError(f"S and R: shapes {jnp.shape(s)} and {jnp.shape(r)} differ.")
    cross = 2.0 * l2 * float(np.vdot(f64(s), f64(r)))
    return _certificate(bound, l2 * sq_norm(r), 0.0, cross, disjoint_supports(s, r), True)


class PruneRestore(NamedTuple):
    """Statement 6 for ``A = S + Q + P`` (pairwise disjoint supports).

    Attributes:
      bound_restore: bound on ``J(S + Q) - J(A)``: ``B_T(P) - l2||P||^2 - l1||P||_1``.
      bound_prune_all: bound on ``J(S) - J(A)``: ``B_T(Q+P) - l2||Q+P||^2 - l1||Q+P||_1``.
      restore_helps: ``B_T(Q+P) - B_T(P) > l2||Q||^2 + l1||Q||_1`` (the restore bound is lower).
      hypotheses_hold: disjoint supports and provable bounds.
    """

    bound_restore: Array
    bound_prune_all: Array
    restore_helps: bool
    hypotheses_hold: bool


def prune_restore(
    s: Array,
    q: Array,
    p: Array,
    psi1: Array,
    lipschitz: Array | float,
    l1: float,
    l2: float,
    provable: bool = True,
) -> PruneRestore:
    """Statement 6: is restoring ``Q`` (keeping ``S + Q``) certified-better than pruning ``Q + P``?

    Args:
      s: the kept part ``S``.
      q: the candidate for restoring, ``Q``.
      p: the part removed in both cases, ``P``.
      psi1: layer inputs, as in :func:`~mpjax.certificates.bounds.data_path_bound`.
      lipschitz: ``L_s``, as in :func:`~mpjax.certificates.bounds.data_path_bound`.
      l1: l1 strength of ``J``.
      l2: l2 strength of ``J``.
      provable: False when ``lipschitz`` is an estimate.
    """
    s, q, p = (f64(a) for a in (s, q, p))
    disjoint = disjoint_supports(s, q, p)
    b_p = data_path_bound(p, psi1, lipschitz, provable).bound
    b_qp = data_path_bound(q + p, psi1, lipschitz, provable).bound
    restore = b_p - l2 * sq_norm(p) - l1 * l1_norm(p)
    prune_all = b_qp - l2 * sq_norm(q + p) - l1 * l1_norm(q + p)
    helps = bool(b_qp - b_p > l2 * sq_norm(q) + l1 * l1_norm(q))
    return PruneRestore(restore, prune_all, helps, bool(disjoint and provable))


class Stationarity(NamedTuple):
    """Statement 7: ``2 l2 ||R||^2 + l1 ||R||_1 <= B_T + eps`` at an eps-stationary point.

    Attributes:
      eps: the one-sided slope ``-liminf [J(A_{1-h}) - J(A_1)]/h`` (or the given eps).
      lhs: ``2 l2 ||R||_F^2 + l1 ||R||_1``.
      rhs: ``B_T(R) + eps``.
      holds: ``lhs <= rhs``.
      hypotheses_hold: provable bound.
    """

    eps: Array
    lhs: Array
    rhs: Array
    holds: bool
    hypotheses_hold: bool


def stationarity_eps(grad_ce: Array, r: Array, l1: float, l2: float) -> Array:
    """``-d/dh J(A_{1-h})|_{h=0+} = <grad CE(A), R> + 2 l2 ||R||^2 + l1 ||R||_1`` (``S o R = 0``)."""
    return float(np.vdot(f64(grad_ce), f64(r))) + 2 * l2 * sq_norm(r) + l1 * l1_norm(r)


def stationarity_bound(
    r: Array, bound: PathBound, l1: float, l2: float, eps: Array | float
) -> Stationarity:
    """Statement 7. Dividing statement 4 at ``theta = 1 - h`` by ``h`` and letting ``h -> 0``:
    ``-eps <= B_T - 2 l2 ||R||^2 - l1 ||R||_1``."""
    lhs = 2 * l2 * sq_norm(r) + l1 * l1_norm(r)
    rhs = bound.bound + float(eps)
    return Stationarity(float(eps), lhs, rhs, bool(lhs <= rhs * (1 + 1e-6) + 1e-9), bound.provable)


class TelescopedBound(NamedTuple):
    """Statement 8: layers pruned one after another, each bound computed in the network
    where the earlier layers are already pruned; ``|CE(pruned) - CE(dense)| <= total``.

    Attributes:
      total: ``sum_k B_T^(k)``.
      eta: ``sum_k eta_s^(k)`` per sample (logit drift bound of the whole sequence).
      steps: the per-step :class:`~mpjax.certificates.bounds.PathBound` values.
      provable: all steps provable.
    """

    total: Array
    eta: Array
    steps: tuple[PathBound, ...]
    provable: bool


def telescope(steps: Sequence[PathBound]) -> TelescopedBound:
    """Sum per-step bounds (statement 8). ``steps`` must share the sample set ``T``.

    Raises:
      ValueError: if ``steps`` is empty.
    """
    if not steps:
        raise ValueError("steps: need at least one per-layer PathBound.")
    total = sum(b.bound for b in steps)
    eta = sum(b.eta for b in steps)
    return TelescopedBound(total, eta, tuple(steps), all(b.provable for b in steps))


def support_threshold(
    g: float, shape: tuple[int, int], delta: float, n: int | None = None
) -> float:
    """Statement 10: ``t = sqrt(2 g log(2 N M / delta) / N)`` for an ``N x M`` matrix ``S + R``,
    ``R`` iid ``N(0, g/N)``. With probability ``>= 1 - delta`` every ``|R_ij| <= t``: thresholding
    ``|W_ij| > t`` has no false positive and keeps every ``|S_ij| > 2 t``.

    ``n`` is the variance denominator ``N`` (default ``shape[0]``).

    Raises:
      ValueError: if ``delta`` is not in ``(0, 1)``.
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta={delta}: must lie in (0, 1).")
    rows, cols = shape
    n = rows if n is None else n
    return math.sqrt(2.0 * g * math.log(2.0 * rows * cols / delta) / n)


def threshold_support(
    w: Array, g: float, delta: float, n: int | None = None
) -> tuple[np.ndarray, float]:
    """Statement 10 applied: ``(|W| > t, t)`` with ``t = support_threshold(g, W.shape, delta, n)``.

    Raises:
      ValueError: if ``w`` is not a matrix or ``delta`` is not in ``(0, 1)``.

    Examples:
      >>> import numpy as np
      >>> mask, t = threshold_support(np.diag([10.0, 0.01]), g=1.0, delta=0.1)
      >>> mask.tolist(), round(t, 3)
      ([[True, False], [False, False]], 2.093)
    """
    if np.ndim(w) != 2:
        raise ValueError(f"w: expected a (d_out, d_in) matrix, got shape {np.shape(w)}.")
    t = support_threshold(g, tuple(np.shape(w)), delta, n)
    return np.abs(f64(w)) > t, t
