"""Numerical checks of the certificates: measured quantities against their certified bounds.

Each ``check_*`` function compares what was measured on a network (cross-entropy along the
path, logits, labels, the objective ``J``) with the bound a statement of
``docs/method/certificates.md`` promises, and returns a :class:`Check` record: whether every
comparison holds, the worst slack, how many comparisons were made, how many of them were
*vacuous* (the bound could not have been violated, e.g. no sample certified or an accuracy
bound ``>= 1``) and the tightness ``max measured / bound`` over the others.
:func:`check_level` and :func:`check_frequency` check probability statements
("``P(measured <= bound) >= 1 - delta``") over Monte Carlo draws with a binomial margin.

A :class:`Ledger` collects checks and **negative controls** (deliberately wrong bounds that
must fail), prints one row per statement and raises if a check fails or a control passes:
a check that no wrong bound can fail tests nothing. The theory notebook
(``notebooks/03_theory.ipynb``) and :func:`mpjax.certificates.network.certify_network` use them.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from mpjax.certificates._arithmetic import f64
from mpjax.certificates.bounds import PathBound, path_bound
from mpjax.certificates.statements import ElasticNetCertificate, MarginCertificate

Array = Any

__all__ = [
    "Check",
    "Ledger",
    "check_bound",
    "check_frequency",
    "check_level",
    "check_logit_drift",
    "check_margins",
    "check_objective_bound",
    "check_path_bound",
    "min_draws",
]


class Check(NamedTuple):
    """Outcome of comparing measured quantities with a certified bound.

    Attributes:
      statement: which statement was checked.
      holds: every measured value respects its bound (within ``tol``).
      worst_slack: ``min(bound - measured)``; negative means a violation.
      n_checked: number of (sample / theta / draw) comparisons.
      n_vacuous: comparisons that could not have failed (counted, not in ``max_ratio``).
      max_ratio: tightness, ``max measured / bound`` over the non-vacuous comparisons with a
        positive bound (for probability checks: the empirical ``1 - delta`` quantile of
        ``measured / bound``); NaN when there is none.
    """

    statement: str
    holds: bool
    worst_slack: float
    n_checked: int
    n_vacuous: int = 0
    max_ratio: float = float("nan")


def _ratio(num: np.ndarray, den: np.ndarray) -> float:
    keep = den > 0
    return float(np.max(num[keep] / den[keep])) if np.any(keep) else float("nan")


def check_bound(
    statement: str,
    bound: Array,
    measured: Array,
    tol: float = 1e-5,
    exact: Array = 0.0,
    vacuous: Array | None = None,
) -> Check:
    """Generic check: ``measured <= bound`` entrywise within relative tolerance ``tol``.

    The comparison passes where ``bound - measured >= -tol (1 + |measured|)``.

    Args:
      statement: the name reported.
      bound: the certified upper bounds.
      measured: the measured values (broadcast against ``bound``).
      tol: relative tolerance.
      exact: a term both sides share exactly (e.g. the penalty change in ``J``); the tightness
        is ``(measured - exact) / (bound - exact)``, the share of the bound's estimated part
        that was used.
      vacuous: bool mask of comparisons that cannot fail; they are checked and counted in
        ``n_vacuous`` but left out of ``max_ratio``.

    Examples:
      >>> check_bound("demo", [1.0, 2.0], [0.5, 2.5]).holds
      False
      >>> check_bound("demo", [1.0, 2.0], [0.5, 1.5]).max_ratio
      0.75
    """
    bound, measured, exact = np.broadcast_arrays(f64(bound), f64(measured), f64(exact))
    if bound.size == 0:
        return Check(statement, True, float("inf"), 0)
    slack = bound - measured
    scale = tol * (1.0 + np.abs(measured))
    vac = np.zeros(slack.shape, bool) if vacuous is None else np.broadcast_to(vacuous, slack.shape)
    live = ~vac
    ratio = _ratio((measured - exact)[live], (bound - exact)[live])
    holds = bool(np.all(slack >= -scale))
    return Check(statement, holds, float(np.min(slack)), int(slack.size), int(vac.sum()), ratio)


def check_path_bound(
    thetas: Array, ce_theta: Array, ce_one: float, bound: PathBound, tol: float = 1e-5
) -> Check:
    """Statement 1 on measured ``CE(A_theta)``: ``|CE(A_theta) - CE(A_1)| <= (1-theta) B_T``.

    ``theta = 1`` compares ``A_1`` with itself and is skipped.

    Args:
      thetas: the points of the path.
      ce_theta: measured ``CE(A_theta)`` at each point.
      ce_one: measured ``CE(A_1)`` (the dense layer).
      bound: the :class:`~mpjax.certificates.bounds.PathBound` of the removed part.
      tol: relative tolerance of :func:`check_bound`.
    """
    t, c = f64(thetas), f64(ce_theta)
    keep = t != 1.0
    return check_bound(
        "1: CE path bound", path_bound(t[keep], bound), np.abs(c[keep] - ce_one), tol
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
    return check_bound("logit drift <= eta_s", (1.0 - theta) * f64(bound.eta), drift, tol)


def check_margins(logits_one: Array, logits_theta: Array, cert: MarginCertificate) -> Check:
    """Statement 2: no certified sample changes its predicted label.

    Vacuous when no sample is certified. The tightness is the largest shrink of a dense
    gap ``z_top - z_j`` over ``2 eta_s`` (the inequality behind the statement).
    """
    z1, zt = f64(logits_one), f64(logits_theta)
    top = np.argmax(z1, 1)
    rows = np.arange(len(z1))
    shrink = (z1[rows, top][:, None] - z1) - (zt[rows, top][:, None] - zt)
    shrink[rows, top] = -np.inf
    changed = np.argmax(zt, 1) != top
    bad = int(np.sum(changed & cert.certified))
    ratio = _ratio(np.max(shrink, 1), 2.0 * f64(cert.eta))
    vacuous = int(cert.certified.size) if not np.any(cert.certified) else 0
    return Check(
        "2: certified labels kept", bad == 0, float(-bad), int(cert.certified.size), vacuous, ratio
    )


def check_objective_bound(
    thetas: Array, j_theta: Array, j_one: float, cert: ElasticNetCertificate, tol: float = 1e-5
) -> Check:
    """Statements 4/5 on measured ``J(A_theta)``: ``J(A_theta) - J(A_1) <= cert.bound(theta)``.

    ``theta = 1`` is skipped; the tightness leaves out the penalty change, which both sides
    share exactly, so it is that of the ``(1 - theta) B_T`` part.
    """
    t, j = f64(thetas), f64(j_theta)
    keep = t != 1.0
    t, j = t[keep], j[keep]
    exact = -(1 - t**2) * cert.l2_term - (1 - t) * (cert.l1_term + cert.cross_term)
    return check_bound("4/5: objective path bound", cert.bound(t), j - j_one, tol, exact)


def min_draws(delta: float, z: float = 3.0) -> int:
    """Draws needed to see a level ``1 - delta``: the binomial margin ``z sd`` is at most
    ``delta / 2``, i.e. ``n >= (2 z)^2 (1 - delta) / delta``.

    Examples:
      >>> min_draws(0.1)
      324
    """
    return math.ceil((2 * z) ** 2 * (1 - delta) / delta)


def check_frequency(statement: str, failed: Array, delta: float, z: float = 3.0) -> Check:
    """``P(failure) <= delta`` from independent draws: holds unless the failure rate exceeds
    ``delta + z sqrt(delta (1 - delta) / n)``; ``max_ratio`` is the failure rate over ``delta``.

    Raises:
      ValueError: if ``delta`` is not in ``(0, 1)`` or there are fewer than
        :func:`min_draws` draws (a violation of the level could not be seen).
    """
    failed = np.asarray(failed, bool).ravel()
    if not 0 < delta < 1:
        raise ValueError(f"delta={delta}: must lie in (0, 1).")
    if failed.size < min_draws(delta, z):
        raise ValueError(
            f"{statement}: {failed.size} draws cannot show a level 1 - {delta:g}; "
            f"use at least {min_draws(delta, z)}."
        )
    rate = float(failed.mean())
    limit = delta + z * math.sqrt(delta * (1 - delta) / failed.size)
    return Check(statement, rate <= limit, limit - rate, int(failed.size), 0, rate / delta)


def check_level(
    statement: str, measured: Array, bound: Array, delta: float, z: float = 3.0, tol: float = 1e-9
) -> Check:
    """``P(measured <= bound) >= 1 - delta`` over draws (one ``measured``, ``bound`` per draw);
    ``max_ratio`` is the empirical ``1 - delta`` quantile of ``measured / bound``."""
    m, b = np.broadcast_arrays(f64(measured), f64(bound))
    chk = check_frequency(statement, m > b * (1 + tol), delta, z)
    return chk._replace(max_ratio=float(np.quantile(m / b, 1 - delta)))


class Ledger:
    """Checks and negative controls per statement; :meth:`table` and :meth:`verify`.

    Examples:
      >>> led = Ledger()
      >>> _ = led.add(check_bound("s", [1.0], [0.5]))
      >>> _ = led.control(check_bound("s", [0.25], [0.5]))  # a wrong bound must fail
      >>> led.verify()
    """

    def __init__(self) -> None:
        self.checks: list[Check] = []
        self.controls: list[Check] = []

    def add(self, check: Check) -> Check:
        """Record a check (it must hold)."""
        self.checks.append(check)
        return check

    def control(self, check: Check) -> Check:
        """Record a negative control: a wrong bound whose check must NOT hold."""
        self.controls.append(check)
        return check

    def rows(self) -> list[tuple[str, int, int, float, int, int]]:
        """``(statement, checks, vacuous, max ratio, controls failed, controls)`` per statement."""
        names = list(dict.fromkeys(c.statement for c in self.checks + self.controls))
        out = []
        for name in names:
            cs = [c for c in self.checks if c.statement == name]
            ks = [c for c in self.controls if c.statement == name]
            ratios = [c.max_ratio for c in cs if not math.isnan(c.max_ratio)]
            out.append((
                name, sum(c.n_checked for c in cs), sum(c.n_vacuous for c in cs),
                max(ratios) if ratios else float("nan"), sum(not c.holds for c in ks), len(ks),
            ))  # fmt: skip
        return out

    def table(self) -> str:
        """A plain-text table, one row per statement."""
        lines = [f"{'statement':<44}{'checks':>8}{'vacuous':>9}{'max meas/bound':>16}"
                 f"{'controls failed':>17}"]  # fmt: skip
        for name, n, vac, ratio, failed, ctl in self.rows():
            ctl_txt = f"{failed}/{ctl}" if ctl else "-"
            lines.append(f"{name[:43]:<44}{n:>8}{vac:>9}{ratio:>16.4g}{ctl_txt:>17}")
        return "\n".join(lines)

    def verify(self) -> None:
        """Raise ``AssertionError`` naming every failed check and every control that passed."""
        bad = [f"violated: {c.statement} (worst slack {c.worst_slack:.3g})"
               for c in self.checks if not c.holds]  # fmt: skip
        bad += [f"negative control passed: {c.statement}" for c in self.controls if c.holds]
        if bad:
            raise AssertionError("; ".join(bad))
