"""Per-claim verdicts of the L2 study, computed from the recorded numbers.

Each claim of the papers gets ``"supported"``, ``"contradicted"`` or ``"undecided"`` with the
reason and the numbers behind it. Differences between arms are judged against their spread
over seeds: a difference counts only when it exceeds ``2 * se``, ``se`` the standard error of
the mean per-seed difference (arms of one run share each seed's initialisation and data
order, so the comparison is paired). A run whose nets
did not train (best test accuracy below :data:`TRAINED_ACC`) leaves every claim about
trained nets undecided.

References:
  [P25] Berlyand et al., arXiv 2503.01922 (regularisation table).
  [P26] Berlyand et al., arXiv 2606.02608, ESM2 (outer-layer scaling, noise injection).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Test accuracy below which a Fashion-MNIST net counts as not trained (the papers' nets
#: reach 72-90%).
TRAINED_ACC = 0.70

#: The papers' regularisation table (test accuracy, %).
PAPER_TABLE = {"none": 71.64, "MP": 81.22, "L1+L2": 81.70, "MP+L1+L2": 90.53, "MP+L2": 90.16}

#: Orderings the papers' table shows, as (better arm, worse arm).
TABLE_CLAIMS = (
    ("MP", "none"),
    ("L1+L2", "none"),
    ("MP+L1+L2", "L1+L2"),
    ("MP+L2", "none"),
    ("MP+L1+L2", "none"),
)


def _verdict(claim: str, verdict: str, why: str, **numbers: Any) -> dict[str, Any]:
    return {"claim": claim, "verdict": verdict, "why": why, "numbers": numbers}


def compare(
    a: Sequence[float], b: Sequence[float], paired: bool = False
) -> tuple[float, float, str]:
    """``(mean(a) - mean(b), 2 se, sign)``: sign ``"+"``, ``"-"`` or ``"0"`` (within 2 se).

    ``paired``: ``a[i]`` and ``b[i]`` share a seed (same initialisation and data order, as the
    arms of one run do), so ``se`` is that of the mean per-seed difference; otherwise that of
    a difference of two independent means. With a single seed ``se`` is 0.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    var = lambda x: float(np.var(x, ddof=1)) / len(x) if len(x) > 1 else 0.0  # noqa: E731
    diff = float(a.mean() - b.mean())
    band = 2.0 * float(np.sqrt(var(a - b) if paired else var(a) + var(b)))
    return diff, band, "+" if diff > band else "-" if diff < -band else "0"


def table_verdicts(arms: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Verdicts on the regularisation table from :func:`mpjax.dynamics.arm_table` rows."""
    acc = {r["arm"]: [100 * a for a in r["test_acc"]] for r in arms}
    best = max(max(v) for v in acc.values())
    out = []
    for good, bad in TABLE_CLAIMS:
        if good not in acc or bad not in acc:
            continue  # a run without both arms says nothing about this claim
        claim = f"{good} beats {bad} ({PAPER_TABLE[good]} vs {PAPER_TABLE[bad]} in the papers)"
        diff, band, sign = compare(acc[good], acc[bad], paired=True)
        nums = {"diff_points": round(diff, 2), "two_se": round(band, 2)}
        if best < 100 * TRAINED_ACC:
            out.append(_verdict(claim, "undecided", "no arm trained at this size", **nums))
        elif sign == "+":
            out.append(_verdict(claim, "supported", "difference above 2 se", **nums))
        elif sign == "-":
            out.append(_verdict(claim, "contradicted", "reversed beyond 2 se", **nums))
        else:
            out.append(_verdict(claim, "undecided", "difference within 2 se", **nums))
    return out


def _trend(ns: Sequence[int], values: Sequence[float]) -> float:
    """Slope of ``log(value)`` against ``log(N)`` (least squares)."""
    return float(np.polyfit(np.log(ns), np.log(values), 1)[0])


def scaling_verdicts(
    rows: Sequence[dict[str, Any]],
    rows_n2: Sequence[dict[str, Any]] | None = None,
    init: str = "N(0, 1/N)",
) -> list[dict[str, Any]]:
    """Verdicts on the outer-layer scaling rows (:func:`mpjax.dynamics.experiments.run_scaling`).

    ``tau_diag`` must fall with ``N`` in the trained nets; the slopes at initialisation are
    reported beside, since the initialisation alone already moves these quantities with N.
    """
    ns = [r["N"] for r in rows]
    trained = min(r["test_acc"] for r in rows) >= TRAINED_ACC
    slope, slope0 = (
        _trend(ns, [r["tau_diag"] for r in rows]),
        _trend(ns, [r["tau_diag_init"] for r in rows]),
    )
    nums = {"slope_trained": round(slope, 3), "slope_init": round(slope0, 3), "N": ns}
    claim = f"tau_diag decreases with N ({init} init)"
    if not trained:
        why = "nets not trained at this size (test accuracy below 70%): trained ~ init"
        out = [_verdict(claim, "undecided", why, **nums)]
    elif slope < 0:
        out = [_verdict(claim, "supported", "log-log slope of trained tau_diag < 0", **nums)]
    else:
        out = [_verdict(claim, "contradicted", "trained tau_diag does not fall with N", **nums)]
    if rows_n2:
        s2 = _trend([r["N"] for r in rows_n2], [r["tau_diag"] for r in rows_n2])
        ok2 = min(r["test_acc"] for r in rows_n2) >= TRAINED_ACC and trained
        claim2 = "tau_diag falls faster with N(0, 1/N^2) init"
        nums2 = {"slope_1_over_N": round(slope, 3), "slope_1_over_N2": round(s2, 3)}
        if not ok2:
            out.append(_verdict(claim2, "undecided", "nets not trained at this size", **nums2))
        else:
            v = "supported" if s2 < slope else "contradicted"
            out.append(_verdict(claim2, v, "compared log-log slopes", **nums2))
    accs = [r["test_acc"] for r in rows]
    claim3 = "test accuracy rises with N (the text; the papers' figures show it flat)"
    first, last = (r.get("test_acc_seeds", [r["test_acc"]]) for r in (rows[0], rows[-1]))
    diff, band, sign = compare(last, first)
    v3 = {"+": "supported", "-": "contradicted", "0": "undecided"}[sign]
    why = "largest vs smallest width, against 2 se over seeds"
    if not trained:
        v3, why = "undecided", "nets not trained at this size"
    nums3 = {
        "test_acc": [round(a, 4) for a in accs],
        "diff": round(diff, 4),
        "two_se": round(band, 4),
    }
    out.append(_verdict(claim3, v3, why, **nums3))
    return out


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def noise_verdicts(rows: Sequence[dict[str, Any]], N: int, trained_acc: float) -> list[dict]:
    """Verdicts on the noise sweep: flat CE/accuracy at eps ~ 1/N, rising regularised loss.

    The loss claim is *supported* when ``J_l2`` rises at every step of the sweep,
    *undecided* when it rises overall (Spearman rank correlation >= 0.8 with eps) but some
    steps fall (finite noise draws), and *contradicted* otherwise.
    """
    eps = np.asarray([r["eps"] for r in rows])
    J = np.asarray([r["J_l2"] for r in rows])
    steps = np.diff(J)
    rho = _spearman(eps, J)
    nums = {
        "J_l2_first": round(float(J[0]), 4),
        "J_l2_last": round(float(J[-1]), 4),
        "spearman": round(rho, 3),
        "falling_steps": int(np.sum(steps <= 0)),
        "steps": len(steps),
        "largest_fall": round(float(max(0.0, -steps.min())), 4),
    }
    claim = "the L2-regularised loss rises monotonically in eps"
    if np.all(steps > 0):
        out = [_verdict(claim, "supported", "every step of the sweep raises mean J_l2", **nums)]
    elif rho >= 0.8:
        why = "rises overall, but some steps fall: the draw noise exceeds the increments"
        out = [_verdict(claim, "undecided", why, **nums)]
    else:
        out = [_verdict(claim, "contradicted", "no rising trend in J_l2", **nums)]
    k = int(np.argmin(np.abs(eps - 1.0 / N)))
    d_acc = 100 * (rows[k]["test_acc"] - rows[0]["test_acc"])
    d_ce = rows[k]["test_ce"] - rows[0]["test_ce"]
    claim = f"CE and accuracy barely move at eps ~ 1/N (nearest eps {eps[k]:g}, 1/N = {1 / N:.4g})"
    nums = {"d_test_acc_points": round(d_acc, 2), "d_test_ce": round(d_ce, 4)}
    if trained_acc < TRAINED_ACC:
        out.append(_verdict(claim, "undecided", "the perturbed net is not trained", **nums))
    else:
        flat = abs(d_acc) <= 1.0 and abs(d_ce) <= 0.05
        why = "within 1 point / 0.05 CE" if flat else "moves more than 1 point or 0.05 CE"
        out.append(_verdict(claim, "supported" if flat else "contradicted", why, **nums))
    return out


def format_verdicts(found: Sequence[dict[str, Any]]) -> str:
    """One line per claim: ``verdict | claim | why | numbers``."""
    lines = []
    for v in found:
        nums = ", ".join(f"{k}={x}" for k, x in v["numbers"].items())
        lines.append(f"{v['verdict']:>12} | {v['claim']} | {v['why']} | {nums}")
    return "\n".join(lines)
