"""The report's ESD grid drawn in a child process, started before the report exists.

``esd_grid.png`` is most of the single-threaded matplotlib work of ``mpjax analyze``
(ViT-B/16: 48 panels, ~2 s of one core, plus ~0.4 s to import matplotlib), work a 2-core
machine can do beside the rest. A :class:`PlotWorker` does it in a child process:

1. started first (``spawn``: a fresh interpreter, safe beside JAX's threads), the child
   imports matplotlib while this process imports JAX and opens the model;
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

This module imports nothing heavy (no JAX, no matplotlib), so a command can start the
worker before it imports anything else; ``MPJAX_PLOT_WORKER=0`` turns the worker off.
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

#: Seconds :meth:`PlotWorker.wait` waits for the child before giving up on it.
TIMEOUT = 300.0
#: Set to ``0`` to draw every figure in the calling process.
ENV = "MPJAX_PLOT_WORKER"


def enabled() -> bool:
    """Whether commands start a worker (``MPJAX_PLOT_WORKER`` is not ``0``)."""
    return os.environ.get(ENV, "1").strip() != "0"


def _serve(conn: Any) -> None:
    """The child: import matplotlib, then answer ``layout``, ``panels``, ``finish``."""
    try:
        from mpjax.mp import plots  # matplotlib and numpy; mpjax.mp imports no JAX here

        plan = None
        while True:
            kind, *args = conn.recv()
            if kind == "layout":
                plan = plots.esd_grid_start(*args)
            elif kind == "panels":
                for path, (s, fit, spike_fit) in args[0].items():
                    plots.esd_grid_panel(plan, path, s, fit, spike_fit)
            elif kind == "finish":
                conn.send(("done", plots.esd_grid_finish(plan, args[0])))
                return
            else:
                return
    except (EOFError, KeyboardInterrupt):
        return
    except Exception as e:  # reported to the parent, which draws the grid itself
        conn.send(("error", f"{type(e).__name__}: {e}"))


class PlotWorker:
    """A child process that draws one ESD grid (see the module docstring)."""

    def __init__(self) -> None:
        self.error: str | None = None
        self.shown: set[str] = set()
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child,), name="mpjax-plots", daemon=True)
        self._sent = self._started = False
        try:
            self._proc.start()
            self._started = True
        except (OSError, RuntimeError) as e:
            self.error = f"could not start ({e})"
        child.close()

    def _send(self, message: tuple) -> bool:
        if self.error is None:
            try:
                self._conn.send(message)
                return True
            except (OSError, ValueError) as e:
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
            if not self._conn.poll(timeout):
                self.error = f"no answer within {timeout:.0f} s"
                return None
            kind, value = self._conn.recv()
            if kind != "done":
                self.error = str(value)
                return None
            return int(value)
        except (EOFError, OSError) as e:
            self.error = f"the worker stopped ({type(e).__name__})"
            return None
        finally:
            self.close()

    def close(self) -> None:
        """Stop the child and free the pipe: at once if it has no figure to save (a
        command that failed early does not wait for it), else after 5 s at most."""
        if self._started:
            if not self._sent:
                self._proc.terminate()
            self._proc.join(timeout=5)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join()
            self._started = False
        self._conn.close()
