"""Progress of a long loop: a tqdm bar on a terminal, log lines everywhere else.

A training run started from a script, a notebook, CI or ``nohup`` writes to a file or a pipe,
where a tqdm bar is either hidden (tqdm's ``disable=None``) or a stream of carriage returns.
:class:`Progress` keeps the bar for a terminal and otherwise prints one plain line to stderr
every ``interval`` seconds (and a last one at the end, when it printed anything), e.g.::

    train: step 120/400 (30%), 6.1 step/s, eta 46 s, loss 0.5123
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm.auto import tqdm

__all__ = [
    "LOG_INTERVAL",
    "Progress",
]

#: Default seconds between two log lines (and before the first) when not on a terminal.
LOG_INTERVAL = 5.0


class Progress:
    """Counts steps of a loop and shows them: a tqdm bar or line-based log output.

    Args:
      total: number of steps of the whole loop.
      desc: what is counted (first word of each line, the bar's label).
      unit: name of one step (``"step"``, ``"image"``).
      initial: steps already done (a resumed run).
      enabled: False shows nothing at all.
      interval: seconds between two log lines when not on a terminal (also the delay before
        the first line, so that loops shorter than this stay silent); default
        :data:`LOG_INTERVAL`.
      stream: where to write (default ``sys.stderr``); a terminal gets the tqdm bar.

    Examples:
      >>> import io
      >>> out = io.StringIO()
      >>> p = Progress(4, "train", interval=0.0, stream=out)
      >>> p.update(3, loss=0.5)
      >>> p.close()
      >>> out.getvalue().splitlines()[0].startswith("train: step 3/4 (75%)")
      True
    """

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "step",
        initial: int = 0,
        enabled: bool = True,
        interval: float | None = None,
        stream: TextIO | None = None,
    ):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.count = self._start = int(initial)
        self.interval = float(LOG_INTERVAL if interval is None else interval)
        self.stream = sys.stderr if stream is None else stream
        self.postfix: dict[str, Any] = {}
        self._last = time.perf_counter()
        self._printed = 0
        self._printed_count = self.count
        self._first: tuple[float, int] | None = None  # (time, count) of the first update
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.enabled = bool(enabled)
        self._bar = None
        if self.enabled and isatty():
            self._bar = tqdm(
                total=self.total, initial=self._start, desc=desc, unit=unit,
                file=self.stream, delay=min(self.interval, 2.0),
            )  # fmt: skip

    def update(self, n: int = 1, **postfix: Any) -> None:
        """Count ``n`` more steps; ``postfix`` values (loss, ...) are shown beside the count."""
        if self._first is None:  # rates leave the first step out (it often compiles)
            self._first = (time.perf_counter(), self.count + n)
        self.count += n
        if postfix:
            self.set_postfix(**postfix)
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and time.perf_counter() - self._last >= self.interval:
            self._line()

    def set_postfix(self, **postfix: Any) -> None:
        """Values (loss, ...) shown beside the count from the next update on."""
        self.postfix.update(postfix)
        if self._bar is not None:
            self._bar.set_postfix({k: _fmt(v) for k, v in self.postfix.items()}, refresh=False)

    def _line(self) -> None:
        now = time.perf_counter()
        parts = [f"{self.desc}: {self.unit} {self.count}/{self.total}"]
        if self.total:
            parts[0] += f" ({100 * self.count / self.total:.0f}%)"
        t1, c1 = self._first or (now, self.count)
        if self.count > c1 and now > t1:
            rate = (self.count - c1) / (now - t1)
            parts.append(f"{rate:.3g} {self.unit}/s")
            if self.count < self.total:
                parts.append(f"eta {(self.total - self.count) / rate:.0f} s")
        parts += [f"{k} {_fmt(v)}" for k, v in self.postfix.items()]
        print(", ".join(parts), file=self.stream, flush=True)
        self._last, self._printed, self._printed_count = now, self._printed + 1, self.count

    def close(self) -> None:
        """Finish the bar, or print the last line if any line was printed before."""
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self._printed and self.count != self._printed_count:
            self._line()
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
