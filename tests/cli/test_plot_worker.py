"""The ESD grid drawn by a child process: the same files, and a fallback when it fails."""

import numpy as np
import pytest

from mpjax.cli import analyze, plot_worker
from mpjax.models import lazy_sources as models
from mpjax.mp import analysis


@pytest.fixture
def params(rng):
    out = {
        f"block_{i}": {
            "Dense_0": {"kernel": (rng.standard_normal((48, 96)) / 7).astype(np.float32)},
            "Dense_1": {"kernel": (rng.standard_normal((96, 40)) / 9).astype(np.float32)},
        }
        for i in range(4)
    }
    out["block_2"]["Dense_0"]["kernel"][:, :3] *= 40  # a few spikes
    return out


def _run(tmp_path, name, monkeypatch, worker: str, params, *extra):
    monkeypatch.setenv(plot_worker.ENV, worker)
    monkeypatch.setattr(models, "open_source", lambda source: (params, {}))
    out = tmp_path / name
    assert analyze.main(["src", "--out", str(out), *extra]) == 0
    return {f: (out / f).read_bytes() for f in analyze.REPORT_FILES}


@pytest.mark.parametrize("extra", [(), ("--max-panels", "5")])
def test_worker_writes_the_files_of_a_report_drawn_in_one_process(
    tmp_path, monkeypatch, capsys, params, extra
):
    started = []
    real = plot_worker.PlotWorker
    monkeypatch.setattr(plot_worker, "PlotWorker", lambda: started.append(1) or real())
    alone = _run(tmp_path, "alone", monkeypatch, "0", params, *extra)
    assert not started
    with_worker = _run(tmp_path, "worker", monkeypatch, "1", params, *extra)
    assert started == [1]
    assert with_worker == alone  # byte for byte, figures included
    assert "plot worker" not in capsys.readouterr().err


def test_a_lazy_source_draws_its_panels_as_groups_finish(tmp_path, params, monkeypatch):
    from mpjax import lazy, tree

    monkeypatch.setattr(analysis, "GROUP_BYTES", 1)  # a group per core: several groups
    np.savez(tmp_path / "p.npz", **tree.flatten(params))
    worker = plot_worker.PlotWorker()
    seen = []
    panels = worker.panels
    worker.panels = lambda part: (seen.append(sorted(part)), panels(part))
    analysis.analyze_to_dir(lazy.open_npz(tmp_path / "p.npz"), tmp_path / "a",
                            plot_worker=worker, progress=False, max_panels=6)  # fmt: skip
    analysis.analyze_to_dir(params, tmp_path / "b", progress=False, max_panels=6)
    assert len(seen) > 1  # one call per group of layers, as their fits were done
    for name in analyze.REPORT_FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_a_failing_worker_leaves_the_grid_to_this_process(tmp_path, params, capsys):
    worker = plot_worker.PlotWorker()
    worker.layout(["x"])
    worker._send(("panels", {"not/a/layer": (np.ones(3), None, None)}))  # the child fails
    analysis.analyze_to_dir(params, tmp_path / "a", plot_worker=worker, progress=False)
    analysis.analyze_to_dir(params, tmp_path / "b", progress=False)
    err = capsys.readouterr().err
    assert "plot worker:" in err and "drawing esd_grid.png here" in err
    assert (tmp_path / "a" / "esd_grid.png").read_bytes() == (
        tmp_path / "b" / "esd_grid.png"
    ).read_bytes()
    assert not worker.alive


def test_wait_without_finish_and_close_twice():
    worker = plot_worker.PlotWorker()
    assert worker.wait(timeout=1) is None and "nothing was sent" in worker.error
    worker.close()  # closing again is harmless
    assert not worker.alive


def test_no_worker_for_no_plots_or_help(monkeypatch):
    monkeypatch.setenv(plot_worker.ENV, "1")
    assert analyze._early_worker(["src", "--out", "o", "--no-plots"]) is None
    assert analyze._early_worker(["--help"]) is None
    monkeypatch.setenv(plot_worker.ENV, "0")
    assert analyze._early_worker(["src", "--out", "o"]) is None


def test_a_command_that_fails_early_stops_its_worker(tmp_path, monkeypatch):
    monkeypatch.setenv(plot_worker.ENV, "1")
    made = []
    real = plot_worker.PlotWorker
    monkeypatch.setattr(plot_worker, "PlotWorker", lambda: made.append(real()) or made[-1])
    (tmp_path / "taken").write_text("not mine")
    with pytest.raises(ValueError, match="taken"):
        analyze.main(["vit-ti16", "--out", str(tmp_path / "taken")])
    assert len(made) == 1 and not made[0].alive
    assert (tmp_path / "taken").read_text() == "not mine"


def test_a_script_without_a_main_guard_runs_once(tmp_path, params):
    """The worker is ``python -m mpjax.cli.plot_worker``: it never re-runs the caller's
    script (``multiprocessing``'s spawn would, and the analysis with it)."""
    import os
    import subprocess
    import sys

    from mpjax import tree

    np.savez(tmp_path / "p.npz", **tree.flatten(params))
    script = tmp_path / "run.py"
    script.write_text(
        "import mpjax.cli\n"
        f"open({str(tmp_path / 'runs.txt')!r}, 'a').write('run\\n')\n"
        f"mpjax.cli.main(['analyze', {str(tmp_path / 'p.npz')!r}, '--out', "
        f"{str(tmp_path / 'out')!r}])\n"
    )
    env = {**os.environ, plot_worker.ENV: "1"}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-500:]
    assert (tmp_path / "runs.txt").read_text() == "run\n"
    assert "plot worker" not in done.stderr
    assert (tmp_path / "out" / "esd_grid.png").stat().st_size > 0
