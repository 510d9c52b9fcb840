"""The benches' child-process measure: the peak of the whole process tree, not one process."""

import sys

import pytest

from mpjax.cli.bench import measure

HOLD = (
    "import subprocess, sys, time\n"
    "b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096])\n"
    "if len(sys.argv) > 1:\n"
    "    subprocess.run([sys.executable, '-c', open(sys.argv[1]).read()])\n"
    "else:\n"
    "    time.sleep(0.6)\n"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="samples /proc")
def test_peak_is_the_sum_over_the_process_tree(tmp_path):
    (tmp_path / "child.py").write_text(HOLD)
    parent_and_child = measure.run([sys.executable, "-c", HOLD, str(tmp_path / "child.py")])
    assert parent_and_child.rc == 0
    mib = 2**20
    assert parent_and_child.largest_process < 300 * mib  # each process holds ~200 MiB
    assert parent_and_child.peak_rss > 380 * mib  # both at once
    alone = measure.run([sys.executable, "-c", "pass"])
    assert alone.rc == 0 and alone.peak_rss < 100 * mib  # not this (large) process's mark


def test_exit_status_and_stderr_come_back():
    m = measure.run([sys.executable, "-c", "import sys; sys.stderr.write('x' * 100000); sys.exit(3)"])
    assert m.rc == 3 and m.stderr.endswith("x" * 100) and m.seconds > 0
