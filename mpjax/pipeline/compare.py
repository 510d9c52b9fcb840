"""The method comparison of ``mpjax bench quality``: a grid of one-shot prunes, resumable.

For each model, calibration seed, pattern and method, :func:`run_grid` draws the calibration
images from the training split (:func:`mpjax.pipeline.oneshot.calibration_images`, the same
images for every method of that seed), bakes an input-channel permutation into the dense
model for N:M patterns, prunes (:func:`mpjax.pipeline.oneshot.prune_one_shot`), evaluates,
then for each reconstruction mode refits the same masks
(:func:`mpjax.pipeline.oneshot.refit_shot`) and evaluates again, and for each distillation
budget distills the pruned model from the dense one with the mask frozen. Every finished row
is appended to a JSON file at once (:class:`RowStore`); a restarted run skips the rows the
file already holds, so a long grid survives interruptions.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mpjax import arch, data
from mpjax.models import load_model
from mpjax.pipeline import oneshot
from mpjax.pipeline.job import VIT_BLOCKS
from mpjax.pruning import METHODS, permute_vit
from mpjax.training import DISTILL_CONFIGS, distill, evaluate, vit_apply_fn

#: The fields that identify a row (a restarted run skips rows with the same values).
KEY_FIELDS = ("model", "method", "pattern", "sparsity", "tome", "reconstruct", "budget",
              "calib_images", "steps", "seed")  # fmt: skip
#: Distillation settings per model source (the recipe's short budget).
DISTILL_RECIPES = {"shipped": "fmnist-vit", "shipped-wide": "fmnist-vit-wide"}

__all__ = ["KEY_FIELDS", "Grid", "RowStore", "row_key", "run_grid", "settings"]


@dataclasses.dataclass(frozen=True)
class Grid:
    """What :func:`run_grid` compares.

    Attributes:
      models: model sources (``"shipped"``, ``"shipped-wide"``, a path).
      methods: pruning methods; each runs on the patterns it supports.
      targets: ``(pattern, sparsity)`` pairs, e.g. ``("unstructured", 0.5)``, ``("2:4", 0.5)``.
      reconstruct: reconstruction modes; ``"off"`` is the plain one-shot row.
      steps: distillation budgets (``0`` = none).
      seeds: calibration seeds (also the distillation data order).
      tome: ToMe ``r`` of the extra rows at 2:4 (``0``: none).
      budget: ``--budget`` for the unstructured rows of methods that take one (``None``:
        the method's own criterion).
      calib_images: training images of each seed's calibration set.
      eval_images: test images evaluated (``None`` = all).
      data_dir: where Fashion-MNIST lives (``None``: found on its own) or an IDX directory.
    """

    models: tuple[str, ...]
    methods: tuple[str, ...]
    targets: tuple[tuple[str, float], ...]
    reconstruct: tuple[str, ...] = ("off", "sequential")
    steps: tuple[int, ...] = (0,)
    seeds: tuple[int, ...] = (0, 1, 2)
    tome: int = 1
    budget: str | None = None
    calib_images: int = 256
    eval_images: int | None = None
    data_dir: str | None = None


def settings(grid: Grid) -> list[tuple[str, str, float, int]]:
    """``(method, pattern, sparsity, tome)`` of every pruning the grid runs per model and seed.

    A method runs on the pattern kinds of its registry entry; ``seb`` only unstructured (its
    N:M form is magnitude's). ToMe rows are added at ``2:4``.
    """
    out = []
    for pattern, sparsity in grid.targets:
        kind = "unstructured" if pattern == "unstructured" else "nm"
        tomes = (0, grid.tome) if pattern == "2:4" and grid.tome else (0,)
        for tome in tomes:
            for method in grid.methods:
                if kind in METHODS[method].patterns and not (method == "seb" and kind == "nm"):
                    out.append((method, pattern, sparsity, tome))
    return out


def row_key(row: dict[str, Any]) -> tuple:
    """The identity of a row: its :data:`KEY_FIELDS` values (sparsity rounded)."""
    return tuple(round(row[k], 6) if k == "sparsity" else row[k] for k in KEY_FIELDS)


class RowStore:
    """Rows kept in a JSON list on disk, rewritten atomically after every append.

    Args:
      path: the JSON file (created on the first row; read when it exists), or ``None`` to
        keep rows in memory only.
    """

    def __init__(self, path: str | Path | None):
        self.path = None if path is None else Path(path)
        self.rows: list[dict[str, Any]] = []
        if self.path is not None and self.path.exists():
            self.rows = json.loads(self.path.read_text())
            if not isinstance(self.rows, list):
                raise ValueError(f"--json {self.path}: not a list of rows; pass a new file.")
        self._done = {row_key(r) for r in self.rows}

    def __contains__(self, key: tuple) -> bool:
        return key in self._done

    def add(self, row: dict[str, Any]) -> None:
        """Append ``row`` and rewrite the file (a temporary file renamed over it)."""
        self.rows.append(row)
        self._done.add(row_key(row))
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.rows, indent=1) + "\n")
        os.replace(tmp, self.path)


def _row(model: str, method: str, pattern: str, sparsity: float, tome: int, mode: str,
         grid: Grid, steps: int, seed: int) -> dict[str, Any]:  # fmt: skip
    return dict(model=model, method=method, pattern=pattern, sparsity=float(sparsity),
                tome=tome, reconstruct=mode, budget=_budget(grid, method, pattern),
                calib_images=grid.calib_images, steps=steps, seed=seed)  # fmt: skip


def _budget(grid: Grid, method: str, pattern: str) -> str | None:
    ok = pattern == "unstructured" and METHODS[method].takes_budget
    return grid.budget if ok else None


def run_grid(grid: Grid, store: RowStore, say: Callable[[str], None] = print) -> RowStore:
    """Run every row of ``grid`` that ``store`` does not hold yet, appending each to it.

    Returns:
      ``store``, with one row per (model, setting, reconstruction, steps, seed): the
      :data:`KEY_FIELDS` plus ``acc_dense``, ``acc_pruned``, ``acc_distilled``,
      ``error_before`` / ``error_after`` (mean relative output error of the pruned layers
      on the calibration inputs before / after the refit; equal without one) and
      ``seconds``.
    """
    for model_name in grid.models:
        _ModelRun(model_name, grid, store, say).run()
    return store


class _ModelRun:
    """The rows of one model: its data, dense accuracy and apply functions are shared."""

    def __init__(self, name: str, grid: Grid, store: RowStore, say: Callable[[str], None]):
        self.name, self.grid, self.store, self.say = name, grid, store, say
        self.model = None

    def _todo(self, seed: int) -> list[tuple]:
        """The settings of ``seed`` with at least one row missing from the store."""
        g = self.grid
        return [(method, pattern, sparsity, tome)
                for method, pattern, sparsity, tome in settings(g)
                if any(row_key(_row(self.name, method, pattern, sparsity, tome, mode, g, steps,
                                    seed)) not in self.store
                       for mode in g.reconstruct for steps in g.steps)]  # fmt: skip

    def _load(self) -> None:
        if self.model is not None:
            return
        self.model = load_model(self.name)
        self.train = data.load_idx_dataset("fashion-mnist", "train", self.grid.data_dir)
        test = data.load_idx_dataset("fashion-mnist", "test", self.grid.data_dir)
        n = self.grid.eval_images
        self.test = test if n is None else (test[0][:n], test[1][:n])
        self.acc_dense = self.accuracy(self.model.params, 0)
        self.say(f"{self.name}: dense accuracy {self.acc_dense:.4f} on {len(self.test[0])} images")

    def apply_fn(self, tome: int) -> Callable:
        """The model's apply function with ``tome`` merges, one per ``tome`` (compiled once)."""
        return vit_apply_fn(self.model.config, tome)

    def accuracy(self, params: Any, tome: int) -> float:
        return evaluate(params, self.apply_fn(tome), *self.test, progress=False)

    def run(self) -> None:
        for seed in self.grid.seeds:
            todo = self._todo(seed)
            if not todo:
                continue
            self._load()
            calib = oneshot.calibration_images(self.train, self.grid.calib_images, seed)
            dense = {}
            for method, pattern, sparsity, tome in todo:
                if (pattern, tome) not in dense:
                    dense[pattern, tome] = self._dense_for(pattern, tome, calib[0])
                self._setting(method, pattern, sparsity, tome, seed, calib, dense[pattern, tome])

    def _dense_for(self, pattern: str, tome: int, images: np.ndarray) -> Any:
        """The dense params the masks are chosen on: N:M patterns get the permutation."""
        params = self.model.params
        if pattern == "unstructured":
            return params
        inputs = oneshot.capture_inputs(self.model.config, params, images, tome)
        return permute_vit(params, arch.parse_pattern(pattern).n, calib_inputs=inputs)[0]

    def _setting(self, method, pattern, sparsity, tome, seed, calib, dense) -> None:
        started = time.perf_counter()
        grid, config = self.grid, self.model.config
        shot = oneshot.prune_one_shot(
            config, dense, method, pattern, None if pattern != "unstructured" else sparsity,
            include=VIT_BLOCKS, calib=calib, tome_r=tome,
            budget=_budget(grid, method, pattern), apply_fn=self.apply_fn(tome),
        )  # fmt: skip
        prune_seconds = time.perf_counter() - started
        inputs = oneshot.capture_inputs(config, dense, calib[0], tome)
        for mode in grid.reconstruct:
            t0 = time.perf_counter()
            if mode == "off":  # the one-shot weights' own errors (before = after)
                out = _with_errors(shot, config, dense, calib[0], tome, inputs)
            else:
                out = oneshot.refit_shot(config, dense, shot, mode, calib[0], tome, inputs=inputs)
            acc_pruned = self.accuracy(out.params, tome)
            for steps in grid.steps:
                row = _row(self.name, method, pattern, sparsity, tome, mode, grid, steps, seed)
                if row_key(row) in self.store:
                    continue
                acc = self._distill(out, dense, tome, steps, seed) if steps else acc_pruned
                errors = out.errors or []
                row.update(acc_dense=self.acc_dense, acc_pruned=acc_pruned, acc_distilled=acc,
                           error_before=_mean(e.before for e in errors),
                           error_after=_mean(e.after for e in errors),
                           seconds=prune_seconds + time.perf_counter() - t0)  # fmt: skip
                self.store.add(row)
                self.say(f"  {self.name} {method:9s} {pattern:12s} tome={tome} {mode:10s} "
                         f"steps={steps:<4d} seed={seed}: pruned {acc_pruned:.4f} "
                         f"final {acc:.4f}")  # fmt: skip

    def _distill(self, shot: oneshot.OneShot, dense: Any, tome: int, steps: int, seed: int):
        recipe = DISTILL_RECIPES.get(self.name, "fmnist-vit")
        config = dataclasses.replace(
            DISTILL_CONFIGS[recipe], num_steps=steps, warmup_steps=max(1, steps // 10),
            seed=seed, log_every=max(1, steps // 10), progress=False,
        )  # fmt: skip
        with tempfile.TemporaryDirectory() as workdir:
            student, _ = distill(shot.params, dense, shot.masks, self.apply_fn(tome),
                                 self.train, config, workdir,
                                 teacher_apply_fn=self.apply_fn(0))  # fmt: skip
        return self.accuracy(student, tome)


def _with_errors(shot, config, dense, images, tome, inputs) -> oneshot.OneShot:
    """``shot`` with its layers' errors in the pruned network (no refit: before = after)."""
    errors = oneshot.network_errors(config, dense, shot.params, shot.masks, images, tome, inputs)
    return dataclasses.replace(shot, errors=oneshot.error_rows(errors, errors))


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None
