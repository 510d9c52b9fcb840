"""Tests for mpjax.training.progress: line-based progress when not on a terminal, a tqdm bar
on one, and the training and evaluation loops showing it."""

from __future__ import annotations

import io

import hypothesis  # noqa: F401  (imported before orbax runs: CPython 3.11.7 AST bug)
import pytest
from tiny_net import apply_fn, init_params, small_config, tiny_data

from mpjax.training import evaluate, progress, train
from mpjax.training.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_lines_every_interval_when_not_a_terminal():
    out = io.StringIO()
    bar = Progress(10, "train", interval=0.0, stream=out)
    bar.update(4, loss=0.25)
    bar.update(2)
    bar.update(4)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "train: step 4/10 (40%), loss 0.25"  # no rate from the first update
    assert lines[1].startswith("train: step 6/10 (60%), ") and " step/s, eta " in lines[1]
    assert lines[2].startswith("train: step 10/10 (100%)") and len(lines) == 3
    assert "\r" not in out.getvalue()


def test_short_loops_stay_silent_and_disabled_prints_nothing():
    out = io.StringIO()
    with Progress(10, "evaluate", unit="image", interval=60.0, stream=out) as bar:
        bar.update(10)
    off = Progress(10, "train", interval=0.0, enabled=False, stream=out)
    off.update(10)
    off.close()
    assert out.getvalue() == ""


def test_a_terminal_gets_a_tqdm_bar():
    out = _Terminal()
    bar = Progress(5, "train", interval=0.0, stream=out)
    bar.update(5, loss=0.5)
    bar.close()
    assert "\r" in out.getvalue() and "5/5" in out.getvalue()


@pytest.fixture
def every_step(monkeypatch):
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)


def test_train_and_evaluate_show_progress_when_not_on_a_terminal(tmp_path, capsys, every_step):
    images, labels = tiny_data()
    cfg = small_config(num_steps=4, progress=True)
    params, _ = train(init_params(), apply_fn, (images, labels), cfg, tmp_path)
    err = capsys.readouterr().err  # pytest's capture is not a terminal
    assert "train: step 1/4 (25%)" in err and "train: step 4/4 (100%)" in err
    assert "step 0/4" not in err
    assert "loss " in err
    evaluate(params, apply_fn, images, labels, batch_size=32)
    assert "evaluate: image 96/96 (100%)" in capsys.readouterr().err
    evaluate(params, apply_fn, images, labels, batch_size=32, progress=False)
    assert capsys.readouterr().err == ""
