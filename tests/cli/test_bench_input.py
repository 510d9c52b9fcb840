"""``mpjax bench input``: the table of the three pipelines and the ratio, and its flag checks."""

from __future__ import annotations

import re

import pytest

from mpjax.cli.bench import input as bench_input


def test_bench_input_prints_the_three_pipelines_and_the_ratio(capsys):
    assert bench_input.main(["--images", "48", "--batch-size", "16", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    rates = dict(re.findall(r"^(in-memory|folder|arrayrecord)\s+(\d+)", out, re.M))
    assert set(rates) == {"in-memory", "folder", "arrayrecord"}
    assert all(int(v) > 0 for v in rates.values())
    assert re.search(r"stream \(best\) / in-memory = \d+\.\d{3}", out)


@pytest.mark.parametrize(
    ("argv", "match"),
    [(["--images", "8", "--batch-size", "16"], "--images 8: must be >= --batch-size 16"),
     (["--workers", "-1"], "--workers -1")],
)  # fmt: skip
def test_bench_input_checks_its_flags(argv, match):
    with pytest.raises(ValueError, match=match):
        bench_input.main(argv)
