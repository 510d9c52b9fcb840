"""End-to-end pruning: analyze -> budgets -> masks -> distill -> evaluate -> report.

This is the product's main job and what ``mpjax prune`` and ``mpjax demo`` run:

1. load a model (any source of :func:`mpjax.models.load_source`, e.g. the shipped
   Fashion-MNIST ViT), and fit the MP law to every layer (:func:`mpjax.mp.analyze_to_dir`);
2. optionally bake an N:M input-channel permutation into the parameters
   (:func:`mpjax.pruning.permute_vit`: the dense function is unchanged);
3. prune with one method (:func:`mpjax.pruning.prune`: magnitude, SEB budgets, SER, CAST,
   low-rank), capturing calibration inputs and a gradient function from the data when the
   method needs them;
4. recover with a short frozen-mask distillation from the dense model
   (:func:`mpjax.training.distill`), optionally with ToMe on both models, in ``OUT/distill``:
   an interrupted run of the same job resumes there, a folder mpjax did not write is never
   touched (:mod:`mpjax.pipeline.workdir`);
5. evaluate dense / pruned / distilled accuracy, count MACs from the masks that were
   applied (:mod:`mpjax.pipeline.macs`), and save an orbax checkpoint (params with zeros,
   masks beside them) and a report (:mod:`mpjax.pipeline.report`: JSON, markdown and PNG)
   in the output directory.

With ``progress`` every step says what it does on stderr (one line each; data loading and
CAST log their own lines, evaluation and distillation show a bar on a terminal and log lines
elsewhere).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mpjax import arch, checkpoint, data, tree
from mpjax.models import LoadedModel, load_model, sources
from mpjax.mp import analyze_to_dir
from mpjax.pipeline import oneshot
from mpjax.pipeline import workdir as distill_dir
from mpjax.pipeline.macs import mac_summary
from mpjax.pipeline.report import PruneReport, write_report
from mpjax.pruning import METHODS, parse_target, permute_vit
from mpjax.training import DistillConfig, distill, evaluate

#: Source name of the model shipped with mpjax.
SHIPPED = sources.SHIPPED
#: Default layers pruned in a ViT: the block matrices (qkv, out, fc1, fc2), as in the papers.
VIT_BLOCKS = "Transformer/encoderblock_*"
#: Dataset names the job reads with :func:`mpjax.data.load_idx_dataset`.
DATASET_NAMES = {"fashion-mnist": "fashion-mnist", "fmnist": "fashion-mnist", "mnist": "mnist"}
#: Rows of calibration inputs kept per layer (CAST covariances, permutation scores).
CALIB_ROWS = oneshot.CALIB_ROWS


@dataclasses.dataclass
class PruneJob:
    """What to prune and how (the options of ``mpjax prune``)."""

    source: str  # anything mpjax.models.load_source reads: "shipped", a path, "vit-b16", ...
    out: str  # output directory (report, checkpoint, analysis)
    method: str = "magnitude"  # a method of mpjax.pruning.METHODS
    pattern: str = "unstructured"  # "unstructured" or "K:N"
    sparsity: float | None = None  # implied by a K:N pattern
    data: str | None = None  # "fashion-mnist", "mnist" or an IDX directory; None = no data
    data_dir: str | None = None  # where the named dataset lives (default: found on its own)
    tome_r: int = 0  # ToMe merges per block, on the dense, pruned and distilled model alike
    permute: bool = False  # bake an N:M input-channel permutation in before pruning
    distill_steps: int = 0  # frozen-mask distillation steps (0 = none)
    distill_lr: float = 5e-4  # peak AdamW learning rate of the distillation
    batch_size: int = 128  # distillation batch
    calib_images: int = 256  # train images whose layer inputs calibrate (rows capped at 4096)
    eval_images: int | None = None  # evaluate on the first N test images (None = all)
    include: str | None = None  # glob of layers to prune (default: ViT blocks, else all)
    seed: int = 0  # data order of calibration and distillation
    progress: bool = True  # progress bars
    overwrite: bool = False  # replace OUT/distill of another prune job (never a foreign one)
    reconstruct: str = "off"  # refit kept weights: "off", "parallel" or "sequential"
    budget: str | None = None  # per-layer sparsities: "uniform", "seb", "alpha" (None: method's)

    def validate(self) -> None:
        """Check every option before any work starts.

        Raises:
          ValueError: naming the option at fault.
        """
        methods = tuple(METHODS)
        if self.method not in methods:
            raise ValueError(f"--method: {self.method!r}; choose one of {methods}.")
        _, n, _ = parse_target(self.pattern, self.sparsity)
        method = METHODS[self.method]
        if ("unstructured" if n is None else "nm") not in method.patterns:
            raise ValueError(
                f"--pattern: method {self.method!r} has no {self.pattern} form; {method.hint}"
            )
        if self.tome_r < 0 or self.distill_steps < 0 or self.calib_images < 1:
            raise ValueError("--tome, --distill-steps must be >= 0 and --calib-images >= 1.")
        if (method.needs_grad_fn or oneshot.reads_calibration(self.method)) and self.data is None:
            raise ValueError(f"--method {self.method} needs calibration data: pass --data.")
        self._validate_oneshot(method, n)
        if self.method == "lowrank" and self.distill_steps and self.data is not None:
            raise ValueError(
                "--distill-steps: low rank keeps no mask, so distillation would "
                "train the full matrices and undo the rank; pass --distill-steps 0."
            )


    def _validate_oneshot(self, method, n: int | None) -> None:
        """``--reconstruct`` and ``--budget`` against the method, pattern and data."""
        if self.reconstruct not in oneshot.RECONSTRUCT_MODES:
            raise ValueError(f"--reconstruct {self.reconstruct}: choose one of "
                             f"{oneshot.RECONSTRUCT_MODES}.")  # fmt: skip
        if self.reconstruct != "off" and self.data is None:
            raise ValueError(f"--reconstruct {self.reconstruct}: refitting needs calibration "
                             "inputs; pass --data (e.g. fashion-mnist) or --reconstruct off.")
        if self.reconstruct != "off" and not method.returns_masks:
            raise ValueError(f"--reconstruct: method {self.method!r} keeps no mask to refit on; "
                             "pass --reconstruct off.")  # fmt: skip
        if self.budget is None:
            return
        if self.budget not in oneshot.BUDGETS:
            raise ValueError(f"--budget {self.budget}: choose one of {oneshot.BUDGETS}.")
        if n is not None or not method.takes_budget:
            takers = tuple(m.name for m in METHODS.values() if m.takes_budget)
            raise ValueError(f"--budget: per-layer budgets apply to unstructured {takers}; "
                             f"drop --budget for {self.method} {self.pattern}.")  # fmt: skip


def _load_splits(spec: str, data_dir: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (x, y), "test": (x, y)}`` of a named IDX dataset or an IDX directory."""
    name, directory = DATASET_NAMES.get(spec), data_dir
    if name is None:
        name, directory = "fashion-mnist", spec  # a directory holding the IDX files
    return {s: data.load_idx_dataset(name, s, directory) for s in ("train", "test")}


def _group_size(pattern: str) -> int | None:
    """``n`` of a ``"k:n"`` pattern, ``None`` for unstructured."""
    return None if pattern == "unstructured" else arch.parse_pattern(pattern).n


def _say(job: PruneJob, text: str) -> None:
    """One progress line on stderr (``prune: ...``) when the job shows progress."""
    if job.progress:
        print(f"prune: {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _library_log(enabled: bool) -> Iterator[None]:
    """Show the INFO lines of the ``mpjax`` loggers (data loading, CAST) on stderr."""
    if not enabled:
        yield
        return
    logger = logging.getLogger("mpjax")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("prune: %(message)s"))
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def _lowrank(pruning: dict[str, Any], views) -> dict[str, Any] | None:
    """The report's ``lowrank`` field: ranks, parameter share removed, what is stored."""
    if "lowrank_rank" not in pruning:
        return None
    ranks = {p: int(r) for p, r in pruning["lowrank_rank"].items()}
    return {"ranks": ranks, "params_removed": 1.0 - float(pruning["lowrank_density"]),
            "stored": "the checkpoint holds each rank-r matrix dense, in place of W "
                      "(no zeros, no factors)"}  # fmt: skip


def _lowrank_rows(layers: list[dict[str, Any]], ranks: dict[str, int]) -> list[dict[str, Any]]:
    """Per-layer rows with ``rank`` and the parameter share two rank-r factors would save."""
    out = []
    for r in layers:
        if r["path"] in ranks:
            d_out, d_in = r["shape"]
            kept = min(ranks[r["path"]] * (d_out + d_in), d_out * d_in)
            r = dict(r, rank=ranks[r["path"]], sparsity=1 - kept / (d_out * d_in))
        out.append(r)
    return out


def _reconstruction(job: PruneJob, errors) -> dict[str, Any] | None:
    """The report's ``reconstruction`` field: mode, images and per-layer errors."""
    if errors is None:
        return None
    rows = [dataclasses.asdict(e) for e in errors]
    return {"mode": job.reconstruct, "calib_images": job.calib_images,
            "mean_before": float(np.mean([r["before"] for r in rows])) if rows else 0.0,
            "mean_after": float(np.mean([r["after"] for r in rows])) if rows else 0.0,
            "layers": rows}  # fmt: skip


def _check_out(out: Path) -> None:
    """Create ``out`` or raise ValueError naming ``--out`` (a file, an unwritable parent)."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ValueError(f"--out: {out} is not a directory; pass a new or existing directory.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(
            f"--out: cannot create {out} ({err.strerror}); pass a writable directory."
        ) from None


def run(job: PruneJob) -> PruneReport:
    """Run one pruning job end to end.

    Args:
      job: what to prune and how; validated (options, ``--out`` and ``OUT/distill``)
        before any work.

    Returns:
      The :class:`~mpjax.pipeline.report.PruneReport` also written to ``report.json``.

    Raises:
      ValueError: for a bad option, source, data or output folder (named).
    """
    job.validate()
    out = Path(job.out)
    _check_out(out)
    if job.distill_steps and job.data is not None:
        distill_dir.check(out, job)  # before any costly work
    with _library_log(job.progress):
        return _run(job, out)


def _run(job: PruneJob, out: Path) -> PruneReport:
    started = time.perf_counter()
    _say(job, f"loading {job.source}")
    model = load_model(job.source)
    params = model.params
    tree.check_finite(params)
    if model.config is not None:  # a checkpoint's token count is known only now: before the work
        tokens = model.config.num_tokens
        most = arch.tome_merges(tokens, tokens)
        if job.tome_r > most:
            raise ValueError(f"--tome {job.tome_r}: the model has {tokens} tokens, so a block "
                             f"merges at most {most}; pass --tome {most} or less.")
    include = job.include or (VIT_BLOCKS if model.config is not None else None)
    if job.data:
        _say(job, f"loading {job.data}")
    sets = _load_splits(job.data, job.data_dir) if job.data else None
    if sets is not None and model.config is None:
        raise ValueError("--data: evaluation needs a ViT source; drop --data for this model.")
    if sets is not None and job.calib_images > len(sets["train"][0]):
        available = len(sets["train"][0])
        raise ValueError(f"--calib-images {job.calib_images}: the training split has "
                         f"{available} images; pass at most {available}.")
    _say(job, "fitting the MP law to every layer")
    fits = analyze_to_dir(params, out / "analysis", include=include, progress=job.progress)
    n = _group_size(job.pattern)
    calib = None
    if sets is not None:
        calib = oneshot.calibration_images(sets["train"], job.calib_images, job.seed)
    perms = {}
    if job.permute and n is not None:
        _say(job, f"choosing {job.pattern} input-channel permutations")
        inputs = None
        if calib is not None and model.config is not None:
            inputs = oneshot.capture_inputs(model.config, params, calib[0], job.tome_r)
        params, perms = permute_vit(params, n, calib_inputs=inputs)
    apply_fn = model.apply_fn(job.tome_r) if model.config is not None else None
    views = tree.select(params, include=include)
    if oneshot.reads_calibration(job.method) or job.reconstruct != "off":
        _say(job, f"calibration: capturing the layer inputs of {len(calib[0])} images")
    _say(job, f"pruning {len(views)} layer{'s' * (len(views) != 1)}: {job.method} {job.pattern}"
         + (f", then reconstruction ({job.reconstruct})" if job.reconstruct != "off" else ""))
    shot = oneshot.prune_one_shot(
        model.config, params, job.method, job.pattern, job.sparsity, include=include,
        calib=calib, tome_r=job.tome_r, budget=job.budget, reconstruct=job.reconstruct,
        apply_fn=apply_fn,
    )  # fmt: skip
    pruned, masks, pruning = shot.params, shot.masks, shot.pruning
    if pruning["skipped"]:
        _say(job, f"{len(pruning['skipped'])} layers left dense (report.md says why)")
    accuracy: dict[str, Any] = {}
    final = pruned
    if sets is not None:
        final, accuracy = _evaluate_and_distill(job, model, apply_fn, params, pruned, masks, sets)
    summary, lowrank = pruning["summary"], _lowrank(pruning, views)
    layers = summary["layers"]
    sparsity, global_sparsity = summary["pruned_layers_sparsity"], summary["sparsity"]
    if lowrank is not None:
        layers = _lowrank_rows(layers, lowrank["ranks"])
        total = sum(r["params"] for r in layers)
        sparsity = lowrank["params_removed"]
        global_sparsity = sum(r["sparsity"] * r["params"] for r in layers) / total
    macs = None
    if model.config is not None:
        macs = mac_summary(model.config, masks, job.pattern, job.tome_r,
                           ranks=lowrank and lowrank["ranks"], views=views)  # fmt: skip
    report = PruneReport(
        source=job.source, method=job.method, pattern=job.pattern, tome_r=job.tome_r,
        permuted=bool(perms), sparsity=sparsity, global_sparsity=global_sparsity,
        skipped=pruning["skipped"], macs=macs, lowrank=lowrank, **accuracy,
        budget=job.budget, reconstruction=_reconstruction(job, shot.errors),
        seconds=time.perf_counter() - started,
    )  # fmt: skip
    meta = {"job": dataclasses.asdict(job), "result": json.loads(report.to_json())}
    if model.config is not None:
        meta["vit_config"] = dataclasses.asdict(model.config)
    _say(job, f"saving the checkpoint and the report in {out}")
    checkpoint.save_params(out / "checkpoint", final, masks, meta)
    write_report(out, report, layers, fits)
    return report


def _evaluate_and_distill(job: PruneJob, model: LoadedModel, apply_fn, params, pruned, masks,
                          sets) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """``(final params, accuracy fields of the report)``: evaluate, distill, evaluate.

    ``params`` are the (permuted) dense teacher, ``pruned`` the student; ``apply_fn`` runs
    both with the job's ToMe ``r``.
    """
    test = sets["test"] if job.eval_images is None else tuple(
        a[: job.eval_images] for a in sets["test"]
    )  # fmt: skip
    dense_fn = model.apply_fn(0)

    def accuracy(what: str, p, fn) -> float:
        _say(job, f"evaluating the {what} model on {len(test[0])} test images")
        return evaluate(p, fn, *test, progress=job.progress)

    fields: dict[str, Any] = {"acc_dense": accuracy("dense", model.params, dense_fn)}
    if job.tome_r:
        fields["acc_dense_tome"] = accuracy(f"dense + ToMe r={job.tome_r}", params, apply_fn)
    fields["acc_pruned"] = fields["acc_distilled"] = accuracy("pruned", pruned, apply_fn)
    final = pruned
    if job.distill_steps:
        config = DistillConfig(
            learning_rate=job.distill_lr, num_steps=job.distill_steps,
            warmup_steps=max(1, job.distill_steps // 10), batch_size=job.batch_size,
            seed=job.seed, log_every=max(1, job.distill_steps // 10), progress=job.progress,
        )  # fmt: skip
        workdir, action = distill_dir.claim(job.out, job)
        _say(
            job,
            f"distilling for {job.distill_steps} steps in {workdir}"
            + (" (resuming the earlier run of this job)" if action == "resume" else ""),
        )
        final, summary = distill(
            pruned, params, masks, apply_fn, sets["train"], config, workdir,
            teacher_apply_fn=dense_fn,
        )  # fmt: skip
        fields["acc_distilled"] = accuracy("distilled", final, apply_fn)
        fields["distill"] = {k: summary[k] for k in ("steps", "seconds") if k in summary}
    return final, fields
