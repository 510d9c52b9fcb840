"""Numerical checks of the certificates: measured quantities against their certified bounds.

Each ``check_*`` function compares what was measured on a network (cross-entropy along the
path, logits, labels, the objective ``J``) with the bound a statement of
``docs/method/certificates.md`` promises, and returns a :class:`Check` record. The theory
notebook (``notebooks/03_theory.ipynb``) and :func:`mpjax.certificates.network.certify_network`
use them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from mpjax.certificates._arithmetic import f64
from mpjax.certificates.bounds import PathBound, path_bound
from mpjax.certificates.statements import ElasticNetCertificate, MarginCertificate

Array = Any

__all__ = [
    "Check",
    "check_bound",
    "check_path_bound",
    "check_logit_drift",
    "check_margins",
    "check_objective_bound",
]


class Check(NamedTuple):
    """Outcome of comparing measured quantities with a certified bound.

    Attributes:
      statement: which statement was checked.
      holds: every measured value respects its bound (within ``tol``).
      worst_slack: ``min(bound - measured)``; negative means a violation.
      n_checked: number of (sample / theta) comparisons.
    """

    statement: str
    holds: bool
    worst_slack: float
    n_checked: int


def check_bound(statement: str, bound: Array, measured: Array, tol: float = 1e-5) -> Check:
    """Generic check: ``measured <= bound`` entrywise within relative tolerance ``tol``.

    The comparison passes where ``bound - measured >= -tol (1 + |measured|)``.

    Examples:
      >>> check_bound("demo", [1.0, 2.0], [0.5, 2.5]).holds
      False
    """
    bound, measured = np.asarray(bound, np.float64), np.asarray(measured, np.float64)
    slack = bound - measured
    scale = tol * (1.0 + np.abs(measured))
    return Check(statement, bool(np.all(slack >= -scale)), float(np.min(slack)), int(slack.size))


def check_path_bound(
    thetas: Array, ce_theta: Array, ce_one: float, bound: PathBound, tol: float = 1e-5
) -> Check:
    """Statement 1 on measured ``CE(A_theta)``: ``|CE(A_theta) - CE(A_1)| <= (1-theta) B_T``.

    Args:
      thetas: the points of the path.
      ce_theta: measured ``CE(A_theta)`` at each point.
      ce_one: measured ``CE(A_1)`` (the dense layer).
      bound: the :class:`~mpjax.certificates.bounds.PathBound` of the removed part.
      tol: relative tolerance of :func:`check_bound`.
    """
    return check_bound(
        "1: CE path bound",
        path_bound(thetas, bound),
        np.abs(f64(ce_theta) - ce_one),
        tol,
    )


def check_logit_drift(
    logits_one: Array,
    logits_theta: Array,
    bound: PathBound,
    theta: float = 0.0,
    tol: float = 1e-5,
) -> Check:
    """Per sample ``||z_theta(s) - z_1(s)||_inf <= (1-theta) L_s ||R psi1(s)||_inf``."""
    drift = np.max(np.abs(f64(logits_theta) - f64(logits_one)), axis=1)
    return check_bound("logit drift <= eta_s", (1.0 - theta) * bound.eta, drift, tol)


def check_margins(logits_one: Array, logits_theta: Array, cert: MarginCertificate) -> Check:
    """Statement 2: no certified sample changes its predicted label."""
    changed = np.argmax(f64(logits_theta), 1) != np.argmax(f64(logits_one), 1)
    bad = int(np.sum(changed & cert.certified))
    return Check("2: certified labels kept", bool(bad == 0), float(-bad), int(cert.certified.size))


def check_objective_bound(
    thetas: Array, j_theta: Array, j_one: float, cert: ElasticNetCertificate, tol: float = 1e-5
) -> Check:
    """Statements 4/5 on measured ``J(A_theta)``: ``J(A_theta) - J(A_1) <= cert.bound(theta)``."""
    return check_bound(
        "4/5: objective path bound",
        cert.bound(thetas),
        f64(j_theta) - j_one,
        tol,
    )
