"""The report's ESD grid drawn in a child process, started before the report exists.

``esd_grid.png`` is most of the single-threaded matplotlib work of ``mpjax analyze``
(ViT-B/16: 48 panels, ~2 s of one core, plus ~0.4 s to import matplotlib), work a 2-core
machine can do beside the rest. A :class:`PlotWorker` does it in a child process:

1. started first (``python -m mpjax.cli.plot_worker``: a fresh interpreter, safe beside
   JAX's threads, that never runs the caller's own script the way ``multiprocessing``'s
   ``spawn`` does), the child imports matplotlib while this process imports JAX and opens
   the model;
2. :meth:`PlotWorker.layout` has it lay out the grid (:func:`mpjax.mp.plots.esd_grid_start`)
   as soon as the layers are known: the axes do not depend on the data;
3. :meth:`PlotWorker.panels` hands it layers as their fits are done (while this process
   computes the next ones); it draws each panel (:func:`~mpjax.mp.plots.esd_grid_panel`);
4. :meth:`PlotWorker.finish` has it title and save the figure
   (:func:`~mpjax.mp.plots.esd_grid_finish`) while this process draws ``edges.png``;
   :meth:`PlotWorker.wait` returns once the file is written.

The child runs the three steps :func:`mpjax.mp.plots.esd_grid` runs in one process, so the
PNG is the same file byte for byte. If the child cannot start, dies or reports
an error, :meth:`PlotWorker.wait` returns ``None`` with :attr:`PlotWorker.error` set, and the
caller draws the grid itself (:func:`mpjax.mp.analysis.analyze_to_dir` does): the report
never depends on the worker.

Messages are pickled ``(kind, *args)`` tuples on the child's stdin; its one answer comes
back on its stdout (anything else it would print goes to its stderr). This module imports
nothing heavy (no JAX, no matplotlib), so a command can start the worker before it imports
anything else; ``MPJAX_PLOT_WORKER=0`` turns the worker off.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

#: Seconds :meth:`PlotWorker.wait` waits for the child before giving up on it.
TIMEOUT = 300.0
#: Set to ``0`` to draw every figure in the calling process.
ENV = "MPJAX_PLOT_WORKER"


def enabled() -> bool:
    """Whether commands start a worker (``MPJAX_PLOT_WORKER`` is not ``0``)."""
    return os.environ.get(ENV, "1").strip() != "0"


def serve(inbox: IO[bytes], outbox: IO[bytes]) -> None:
    """The child: import matplotlib, then answer ``layout``, ``panels``, ``finish``."""

    def answer(*reply: Any) -> None:
        pickle.dump(reply, outbox)
        outbox.flush()

    try:
        from mpjax.mp import plots  # matplotlib and numpy; mpjax.mp imports no JAX here

        plan = None
        while True:
            kind, *args = pickle.load(inbox)
            if kind == "layout":
                plan = plots.esd_grid_start(*args)
            elif kind == "panels":
                for path, (s, fit, spike_fit) in args[0].items():
                    plots.esd_grid_panel(plan, path, s, fit, spike_fit)
            elif kind == "finish":
                answer("done", plots.esd_grid_finish(plan, args[0]))
                return
            else:
                return
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        return
    except Exception as e:  # reported to the parent, which draws the grid itself
        answer("error", f"{type(e).__name__}: {e}")


class PlotWorker:
    """A child process that draws one ESD grid (see the module docstring)."""

    def __init__(self) -> None:
        self.error: str | None = None
        self.shown: set[str] = set()
        self._sent = False
        self._reply: list[Any] = []
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # the folder that holds mpjax/
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        try:
            self._proc: subprocess.Popen | None = subprocess.Popen(
                [sys.executable, "-m", "mpjax.cli.plot_worker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
            )  # fmt: skip
        except OSError as e:
            self._proc = None
            self.error = f"could not start ({e})"
            return
        self._reader = threading.Thread(target=self._read_reply, daemon=True)
        self._reader.start()

    def _read_reply(self) -> None:
        try:
            self._reply.append(pickle.load(self._proc.stdout))
        except Exception as e:  # EOF: the child ended without an answer
            self._reply.append(("error", f"the worker stopped ({type(e).__name__})"))

    def _send(self, message: tuple) -> bool:
        if self.error is None and self._proc is not None:
            try:
                pickle.dump(message, self._proc.stdin)
                self._proc.stdin.flush()
                return True
            except (OSError, ValueError, pickle.PicklingError) as e:
                self.error = f"could not send ({type(e).__name__}: {e})"
        return False

    def layout(self, paths: list[str], max_panels: int = 48, ncols: int = 6) -> None:
        """Have the child lay out the grid of a report on ``paths`` (model order)."""
        self.shown = set(list(paths)[:max_panels])
        self._send(("layout", list(paths), max_panels, ncols))

    def panels(self, fitted: dict[str, tuple[Any, Any, Any]]) -> None:
        """Hand the child ``{path: (s, fit, spike_fit)}`` (layers not shown are skipped)."""
        part = {p: v for p, v in fitted.items() if p in self.shown}
        if part:
            self._send(("panels", part))

    def finish(self, path: str | os.PathLike) -> None:
        """Have the child save the grid to ``path``; returns at once (see :meth:`wait`)."""
        self._sent = self._send(("finish", os.fspath(path)))

    def wait(self, timeout: float = TIMEOUT) -> int | None:
        """The number of panels drawn, or ``None`` (then :attr:`error` says why)."""
        try:
            if not self._sent:
                self.error = self.error or "nothing was sent to draw"
                return None
            self._reader.join(timeout)
            if not self._reply:
                self.error = f"no answer within {timeout:.0f} s"
                return None
            kind, value = self._reply[0]
            if kind != "done":
                self.error = str(value)
                return None
            return int(value)
        finally:
            self.close()

    @property
    def alive(self) -> bool:
        """Whether the child process still runs."""
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        """Stop the child and free its pipes: at once if it has no figure to save (a
        command that failed early does not wait for it), else after 5 s at most."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        try:
            proc.stdin.close()  # end of input: a child waiting for a message returns
        except OSError:
            pass
        if not self._sent:
            proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


if __name__ == "__main__":  # the child: answers on the real stdout, prints go to stderr
    _out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, _out)
