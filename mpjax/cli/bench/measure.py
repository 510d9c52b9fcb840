"""Wall seconds and peak memory of a command run in a child process (one helper for benches).

The command is started by a fresh small Python process, not by the benchmark itself: a child
started straight from a large process inherits that process's memory high-water mark
(``vfork`` + ``exec`` keeps it). The helper reports

* ``ru_maxrss`` of the command (``os.wait4``): the peak of its largest process, and
* on Linux, the peak of the **sum** over the command's process tree (itself and every
  descendant, e.g. ``mpjax analyze``'s plot worker), sampled from ``/proc`` every
  :data:`SAMPLE_S` seconds: a peak shorter than that can be missed, so the reported peak
  is the larger of the two.
"""

from __future__ import annotations

import subprocess
import sys
from typing import NamedTuple

#: Seconds between two samples of the process tree's resident memory.
SAMPLE_S = 0.02

_HELPER = f"""
import os, subprocess, sys, threading, time

def tree_rss(pid):
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{{p}}/status") as fh:
                total += next(int(l.split()[1]) for l in fh if l.startswith("VmRSS:"))
            for task in os.listdir(f"/proc/{{p}}/task"):
                with open(f"/proc/{{p}}/task/{{task}}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except (OSError, StopIteration):
            pass
    return total

t = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = []
drain = threading.Thread(target=lambda: err.append(p.stderr.read()))
drain.start()
peak, sample = 0, os.path.isdir("/proc")
while True:
    pid, status, usage = os.wait4(p.pid, os.WNOHANG if sample else 0)
    if pid:
        break
    peak = max(peak, tree_rss(p.pid))
    time.sleep({SAMPLE_S})
drain.join()
sys.stderr.write(err[0].decode(errors="replace")[-400:])
print(time.perf_counter() - t, usage.ru_maxrss, peak, os.waitstatus_to_exitcode(status))
"""


class Measured(NamedTuple):
    """One measured run: wall seconds, peak RSS in bytes, exit status, stderr's tail."""

    seconds: float
    peak_rss: float  # max(ru_maxrss of the command, sampled peak of its process tree)
    largest_process: float  # ru_maxrss of the command alone
    rc: int
    stderr: str


def run(argv: list[str], env: dict[str, str] | None = None) -> Measured:
    """Run ``argv`` through the helper and return its :class:`Measured`.

    Examples:
      >>> import sys
      >>> m = run([sys.executable, "-c", "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])"])
      >>> m.rc, m.peak_rss > 300 * 2**20
      (0, True)
    """
    done = subprocess.run([sys.executable, "-c", _HELPER, *argv], env=env,
                          capture_output=True, text=True)  # fmt: skip
    fields = done.stdout.split()[-4:]
    if len(fields) != 4:
        raise RuntimeError(f"measuring {argv[:3]} failed: {done.stderr.strip()[-300:]}")
    seconds, kib, tree_kib, rc = fields
    largest = int(kib) * 1024.0
    return Measured(float(seconds), max(largest, int(tree_kib) * 1024.0), largest, int(rc),
                    done.stderr)  # fmt: skip
