"""Tests of the per-claim verdicts: differences against 2 se, both directions, undecided."""

import pytest

from mpjax.dynamics import verdicts


def test_compare_counts_differences_beyond_two_standard_errors():
    assert verdicts.compare([0.9, 0.91, 0.92], [0.7, 0.71, 0.72])[2] == "+"
    assert verdicts.compare([0.7, 0.71, 0.72], [0.9, 0.91, 0.92])[2] == "-"
    assert verdicts.compare([0.80, 0.90, 0.70], [0.81, 0.71, 0.91])[2] == "0"
    diff, band, _ = verdicts.compare([1.0, 3.0], [0.0, 0.0])
    assert diff == 2.0 and band == pytest.approx(2 * (2.0 / 2) ** 0.5)
    # paired: a seed effect shared by both arms cancels
    a, b = [0.70, 0.80, 0.90], [0.69, 0.79, 0.885]
    assert verdicts.compare(a, b)[2] == "0" and verdicts.compare(a, b, paired=True)[2] == "+"
    assert verdicts.compare(b, a, paired=True)[2] == "-"


def _arms(acc):
    return [{"arm": k, "test_acc": v} for k, v in acc.items()]


def test_table_verdicts_both_ways_and_untrained():
    good = dict.fromkeys(verdicts.PAPER_TABLE, [0.80, 0.81, 0.82])
    good["none"] = [0.70, 0.71, 0.72]
    good["MP+L1+L2"] = [0.90, 0.91, 0.92]
    found = {v["claim"].split(" (")[0]: v["verdict"] for v in verdicts.table_verdicts(_arms(good))}
    assert found["MP beats none"] == "supported"
    assert found["MP+L1+L2 beats L1+L2"] == "supported"
    bad = dict(good, none=[0.95, 0.96, 0.97])
    found = {v["claim"].split(" (")[0]: v["verdict"] for v in verdicts.table_verdicts(_arms(bad))}
    assert found["MP beats none"] == "contradicted"
    flat = dict.fromkeys(verdicts.PAPER_TABLE, [0.10, 0.11, 0.12])
    assert {v["verdict"] for v in verdicts.table_verdicts(_arms(flat))} == {"undecided"}


def _row(N, tau, tau0, acc):
    return {"N": N, "tau_diag": tau, "tau_diag_init": tau0, "test_acc": acc}


def test_scaling_verdicts_need_trained_nets_and_read_the_slope():
    down = [_row(n, 1.0 / n, 1.0, 0.85) for n in (16, 32, 64)]
    up = [_row(n, float(n), 1.0, 0.85) for n in (16, 32, 64)]
    faster = [_row(n, 1.0 / n**2, 1.0, 0.85) for n in (16, 32, 64)]
    assert verdicts.scaling_verdicts(down)[0]["verdict"] == "supported"
    assert verdicts.scaling_verdicts(up)[0]["verdict"] == "contradicted"
    assert verdicts.scaling_verdicts(down, faster)[1]["verdict"] == "supported"
    assert verdicts.scaling_verdicts(faster, down)[1]["verdict"] == "contradicted"
    untrained = [dict(r, test_acc=0.3) for r in down]
    assert verdicts.scaling_verdicts(untrained)[0]["verdict"] == "undecided"
    assert verdicts.scaling_verdicts(down)[0]["numbers"]["slope_trained"] == pytest.approx(-1)


def _noise(eps, J, acc):
    return [
        {"eps": e, "J_l2": j, "test_acc": a, "test_ce": 0.3 + (0.9 - a)}
        for e, j, a in zip(eps, J, acc, strict=True)
    ]


def test_noise_verdicts_both_ways():
    eps = [0.0, 0.005, 0.01]
    ok = verdicts.noise_verdicts(_noise(eps, [1.0, 1.1, 1.3], [0.9, 0.899, 0.85]), 200, 0.9)
    assert [v["verdict"] for v in ok] == ["supported", "supported"]
    bad = verdicts.noise_verdicts(_noise(eps, [1.0, 0.9, 0.8], [0.9, 0.80, 0.7]), 200, 0.9)
    assert [v["verdict"] for v in bad] == ["contradicted", "contradicted"]
    eps5 = [0.0, 0.002, 0.004, 0.006, 0.008, 0.01]
    wobbly = verdicts.noise_verdicts(
        _noise(eps5, [1, 1.1, 1.09, 1.2, 1.3, 1.4], [0.9] * 6), 200, 0.9
    )
    assert wobbly[0]["verdict"] == "undecided" and wobbly[0]["numbers"]["falling_steps"] == 1
    untrained = verdicts.noise_verdicts(_noise(eps, [1.0, 1.1, 1.3], [0.2] * 3), 200, 0.2)
    assert untrained[1]["verdict"] == "undecided"
