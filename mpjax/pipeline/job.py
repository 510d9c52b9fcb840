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
   (:func:`mpjax.training.distill`), optionally with ToMe on both models;
5. evaluate dense / pruned / distilled accuracy, account MACs (:func:`mpjax.arch.vit_macs`),
   and save an orbax checkpoint (params with zeros, masks beside them) and a report
   (:mod:`mpjax.pipeline.report`: JSON, markdown and PNG) in the output directory.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mpjax import arch, checkpoint, data, tree
from mpjax.models import LoadedModel, load_model, sources, vit
from mpjax.mp import analyze_to_dir
from mpjax.pipeline.report import MacSummary, PruneReport, write_report
from mpjax.pruning import METHODS, parse_target, permute_vit, prune
from mpjax.training import DistillConfig, distill, evaluate, prepare_images

#: Source name of the model shipped with mpjax.
SHIPPED = sources.SHIPPED
#: Default layers pruned in a ViT: the block matrices (qkv, out, fc1, fc2), as in the papers.
VIT_BLOCKS = "Transformer/encoderblock_*"
#: Dataset names the job reads with :func:`mpjax.data.load_idx_dataset`.
DATASET_NAMES = {"fashion-mnist": "fashion-mnist", "fmnist": "fashion-mnist", "mnist": "mnist"}
#: Rows of calibration inputs kept per layer (CAST covariances, permutation scores).
CALIB_ROWS = 4096


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
    calib_images: int = 256  # images whose layer inputs calibrate CAST (rows capped at 4096)
    eval_images: int | None = None  # evaluate on the first N test images (None = all)
    include: str | None = None  # glob of layers to prune (default: ViT blocks, else all)
    seed: int = 0  # data order of calibration and distillation
    progress: bool = True  # progress bars

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
        if (method.needs_grad_fn or method.needs_calibration) and self.data is None:
            raise ValueError(f"--method {self.method} needs calibration data: pass --data.")


def _load_splits(spec: str, data_dir: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (x, y), "test": (x, y)}`` of a named IDX dataset or an IDX directory."""
    name, directory = DATASET_NAMES.get(spec), data_dir
    if name is None:
        name, directory = "fashion-mnist", spec  # a directory holding the IDX files
    return {s: data.load_idx_dataset(name, s, directory) for s in ("train", "test")}


def _grad_fn(apply_fn, images: np.ndarray, labels: np.ndarray):
    """``params -> grads`` of the mean CE on one calibration batch (SER's selection phase)."""
    x, y = prepare_images(images), jnp.asarray(labels)

    def loss(params):
        logits = apply_fn(params, x, False)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    return jax.jit(jax.grad(loss))


def _group_size(pattern: str) -> int | None:
    """``n`` of a ``"k:n"`` pattern, ``None`` for unstructured."""
    return None if pattern == "unstructured" else arch.parse_pattern(pattern).n


def _tokens_per_layer(model: LoadedModel, views, tome_r: int) -> dict[str, int] | None:
    """Tokens each pruned layer sees per image (ToMe shrinks later blocks)."""
    if model.config is None:
        return None
    counts = arch.tome_schedule(model.config.num_tokens, model.config.num_layers, tome_r)
    out = {}
    for path in views:
        if "encoderblock_" in path:
            out[path] = counts[int(path.split("encoderblock_")[1].split("/")[0])]
    return out


def _mac_summary(model: LoadedModel, pattern: str, tome_r: int) -> MacSummary | None:
    if model.config is None:
        return None
    nm = None if pattern == "unstructured" else pattern
    sparse = {t: nm for t in ("qkv", "proj", "fc1", "fc2")} if nm else None
    dense = arch.vit_macs(model.config)
    pruned = arch.vit_macs(model.config, sparse, tome_r=tome_r)
    return MacSummary(
        dense_gmac=dense.dense_total / 1e9,
        pruned_gmac=pruned.total / 1e9,
        reduction=1 - pruned.total / dense.dense_total,
    )


def _layer_inputs(model: LoadedModel, params, calib, tome_r: int) -> dict[str, np.ndarray]:
    if model.config is None or calib is None:
        raise ValueError("--data: calibration inputs need a ViT source and data.")
    _, inputs = vit.layer_inputs(model.config, params, prepare_images(calib[0]), tome_r)
    return {p: np.asarray(x[:CALIB_ROWS]) for p, x in inputs.items()}


def _distill_dir(out: Path, job: PruneJob) -> Path:
    """``out/distill``: resumed when the same job reruns, started afresh for another job."""
    workdir, stamp = out / "distill", out / "distill.job.json"
    text = json.dumps(dataclasses.asdict(job), sort_keys=True)
    if workdir.exists() and (not stamp.exists() or stamp.read_text() != text):
        shutil.rmtree(workdir)
    stamp.write_text(text)
    return workdir


def run(job: PruneJob) -> PruneReport:
    """Run one pruning job end to end.

    Args:
      job: what to prune and how; validated before any work.

    Returns:
      The :class:`~mpjax.pipeline.report.PruneReport` also written to ``report.json``.

    Raises:
      ValueError: for a bad option, source or data (named).
    """
    job.validate()
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model = load_model(job.source)
    params = model.params
    tree.check_finite(params)
    include = job.include or (VIT_BLOCKS if model.config is not None else None)
    fits = analyze_to_dir(params, out / "analysis", include=include, progress=job.progress)
    sets = _load_splits(job.data, job.data_dir) if job.data else None
    if sets is not None and model.config is None:
        raise ValueError("--data: evaluation needs a ViT source; drop --data for this model.")
    n = _group_size(job.pattern)
    calib = None
    if sets is not None:
        rng = np.random.default_rng(job.seed)
        idx = rng.choice(len(sets["train"][0]), job.calib_images, replace=False)
        calib = sets["train"][0][idx], sets["train"][1][idx]
    perms = {}
    if job.permute and n is not None:
        inputs = _layer_inputs(model, params, calib, job.tome_r) if calib else None
        params, perms = permute_vit(params, n, calib_inputs=inputs)
    apply_fn = model.apply_fn(job.tome_r) if model.config is not None else None
    method = METHODS[job.method]  # the registry says which signals the method takes
    signals: dict[str, Any] = {}
    if method.needs_calibration:
        signals["calib_inputs"] = _layer_inputs(model, params, calib, job.tome_r)
    if method.uses_grad_fn and calib is not None:
        signals["grad_fn"] = _grad_fn(apply_fn, *calib)
    views = tree.select(params, include=include)
    pruned, masks, pruning = prune(
        params, job.method, job.pattern, job.sparsity, include=include,
        tokens=_tokens_per_layer(model, views, job.tome_r), on_indivisible="skip", **signals,
    )  # fmt: skip
    accuracy: dict[str, Any] = {}
    final = pruned
    if sets is not None:
        final, accuracy = _evaluate_and_distill(job, model, apply_fn, params, pruned, masks, sets)
    report = PruneReport(
        source=job.source, method=job.method, pattern=job.pattern, tome_r=job.tome_r,
        permuted=bool(perms), sparsity=pruning["summary"]["pruned_layers_sparsity"],
        global_sparsity=pruning["summary"]["sparsity"], skipped=pruning["skipped"],
        macs=_mac_summary(model, job.pattern, job.tome_r), **accuracy,
        seconds=time.perf_counter() - started,
    )  # fmt: skip
    meta = {"job": dataclasses.asdict(job), "result": json.loads(report.to_json())}
    if model.config is not None:
        meta["vit_config"] = dataclasses.asdict(model.config)
    checkpoint.save_params(out / "checkpoint", final, masks, meta)
    write_report(out, report, pruning["summary"]["layers"], fits)
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
    fields: dict[str, Any] = {"acc_dense": evaluate(model.params, dense_fn, *test)}
    if job.tome_r:
        fields["acc_dense_tome"] = evaluate(params, apply_fn, *test)
    fields["acc_pruned"] = fields["acc_distilled"] = evaluate(pruned, apply_fn, *test)
    final = pruned
    if job.distill_steps:
        config = DistillConfig(
            learning_rate=job.distill_lr, num_steps=job.distill_steps,
            warmup_steps=max(1, job.distill_steps // 10), batch_size=job.batch_size,
            seed=job.seed, log_every=max(1, job.distill_steps // 10), progress=job.progress,
        )  # fmt: skip
        workdir = _distill_dir(Path(job.out), job)
        final, summary = distill(
            pruned, params, masks, apply_fn, sets["train"], config, workdir,
            teacher_apply_fn=dense_fn,
        )  # fmt: skip
        fields["acc_distilled"] = evaluate(final, apply_fn, *test)
        fields["distill"] = {k: summary[k] for k in ("steps", "seconds") if k in summary}
    return final, fields
