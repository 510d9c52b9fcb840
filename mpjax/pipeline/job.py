"""End-to-end pruning: analyze -> budgets -> masks -> distill -> evaluate -> report.

This is the product's main job and what ``mpjax prune`` and ``mpjax demo`` run:

1. load a model (any SOURCE of :func:`mpjax.models.convert.load_source`, or the shipped
   Fashion-MNIST ViT), and fit the MP law to every layer (:func:`mpjax.mp.analysis.analyze`);
2. optionally bake an N:M input-channel permutation into the parameters
   (:func:`mpjax.pruning.permute.permute_vit`: the dense function is unchanged);
3. prune with one method (:func:`mpjax.pruning.registry.prune`: magnitude, SEB budgets, SER, CAST,
   low-rank), capturing calibration inputs and a gradient function from the data when the
   method needs them;
4. recover with a short frozen-mask distillation from the dense model
   (:func:`mpjax.training.loop.distill`), optionally with ToMe on both models;
5. evaluate dense / pruned / distilled accuracy, account MACs (:func:`mpjax.arch.macs.vit_macs`),
   and save an orbax checkpoint (params with zeros, masks beside them) and a report
   (markdown + PNG) in the output directory.
"""

from __future__ import annotations

import argparse
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

from mpjax import checkpoint, data, tree
from mpjax.arch import macs
from mpjax.models import convert, vit
from mpjax.mp import analysis
from mpjax.pruning import permute as permute_lib
from mpjax.pruning import registry as prune_lib
from mpjax.training import loop as distill

#: SOURCE name of the model shipped with mpjax.
SHIPPED = "shipped"
#: Default layers pruned in a ViT: the block matrices (qkv, out, fc1, fc2), as in the papers.
VIT_BLOCKS = "Transformer/encoderblock_*"


@dataclasses.dataclass
class PruneJob:
    """What to prune and how (the options of ``mpjax prune``)."""

    source: str  # a load_source SOURCE, or "shipped" for the Fashion-MNIST ViT
    out: str  # output directory (report, checkpoint, analysis)
    method: str = "magnitude"  # magnitude | seb | ser | cast | lowrank
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
        """Raise ``ValueError`` naming the option at fault before any work starts."""
        if self.method not in prune_lib.METHODS:
            raise ValueError(f"--method: {self.method!r}; choose one of {prune_lib.METHODS}.")
        prune_lib.parse_target(self.pattern, self.sparsity)
        if self.tome_r < 0 or self.distill_steps < 0 or self.calib_images < 1:
            raise ValueError("--tome, --distill-steps must be >= 0 and --calib-images >= 1.")
        if self.method in ("cast", "ser") and self.data is None:
            raise ValueError(f"--method {self.method} needs calibration data: pass --data.")


@dataclasses.dataclass
class Model:
    """A loaded model: params, ViT config (None for other sources) and where it came from."""

    params: Any
    config: vit.ViTConfig | None
    info: dict

    def apply_fn(self, tome_r: int = 0):
        """``apply_fn(params, images, train) -> logits`` (ViTs only)."""
        if self.config is None:
            raise ValueError("source: not a ViT; evaluation and distillation need a ViT model.")
        model = vit.ViT(self.config)

        def apply_fn(params, images, train=False):
            del train
            return model.apply({"params": params}, images, tome_r=tome_r)

        return apply_fn


def load_model(source: str) -> Model:
    """The shipped model (``"shipped"``) or anything :func:`convert.load_source` reads."""
    if source == SHIPPED:
        from mpjax.training.recipes import load_shipped_model

        params, config, info = load_shipped_model()
        return Model(params, config, {"kind": "shipped", "source": SHIPPED, **info})
    params, info = convert.load_source(source)
    return Model(params, info.get("config"), info)


def load_data(spec: str, data_dir: str | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (x, y), "test": (x, y)}`` of a named IDX dataset or an IDX directory."""
    name, directory = spec, data_dir
    if spec not in ("fashion-mnist", "fmnist", "mnist"):
        name, directory = "fashion-mnist", spec  # a directory holding the IDX files
    name = "fashion-mnist" if name == "fmnist" else name
    return {s: data.load_idx_dataset(name, s, directory) for s in ("train", "test")}


def _grad_fn(apply_fn, images: np.ndarray, labels: np.ndarray):
    """``params -> grads`` of the mean CE on one calibration batch (SER's selection phase)."""
    x, y = distill.prepare_images(images), jnp.asarray(labels)

    def loss(params):
        logits = apply_fn(params, x, False)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    return jax.jit(jax.grad(loss))


def _nm(pattern: str) -> int | None:
    k, n, _ = prune_lib.parse_target(pattern, None if ":" in pattern else 0.5)
    return n


def _tokens_per_layer(model: Model, views, tome_r: int) -> dict[str, int] | None:
    """Tokens each pruned layer sees per image (ToMe shrinks later blocks)."""
    if model.config is None:
        return None
    counts = vit.token_counts(model.config, tome_r)
    out = {}
    for path in views:
        if "encoderblock_" in path:
            out[path] = counts[int(path.split("encoderblock_")[1].split("/")[0])]
    return out


def _mac_report(model: Model, pattern: str, tome_r: int) -> dict[str, float] | None:
    if model.config is None:
        return None
    nm = None if pattern == "unstructured" else pattern
    sparse = {t: nm for t in ("qkv", "proj", "fc1", "fc2")} if nm else None
    dense = macs.vit_macs(model.config)
    pruned = macs.vit_macs(model.config, sparse, tome_r=tome_r)
    return {
        "dense_gmac": dense.dense_total / 1e9,
        "pruned_gmac": pruned.total / 1e9,
        "reduction": 1 - pruned.total / dense.dense_total,
    }


def run(job: PruneJob) -> dict[str, Any]:
    """Run one pruning job end to end; returns the summary also written to ``report.json``."""
    job.validate()
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model = load_model(job.source)
    params = model.params
    tree.check_finite(params)
    include = job.include or (VIT_BLOCKS if model.config is not None else None)
    fits = analysis.analyze_to_dir(params, out / "analysis", include=include, progress=job.progress)
    sets = load_data(job.data, job.data_dir) if job.data else None
    if sets is not None and model.config is None:
        raise ValueError("--data: evaluation needs a ViT source; drop --data for this model.")
    n = _nm(job.pattern)
    calib = None
    if sets is not None:
        rng = np.random.default_rng(job.seed)
        idx = rng.choice(len(sets["train"][0]), job.calib_images, replace=False)
        calib = sets["train"][0][idx], sets["train"][1][idx]
    perms = {}
    if job.permute and n is not None:
        inputs = _layer_inputs(model, params, calib, job.tome_r) if calib else None
        params, perms = permute_lib.permute_vit(params, n, calib_inputs=inputs)
    apply_fn = model.apply_fn(job.tome_r) if model.config is not None else None
    kwargs: dict[str, Any] = {}
    if job.method == "cast":
        kwargs["calib_inputs"] = _layer_inputs(model, params, calib, job.tome_r)
    if job.method in ("ser", "cast") and calib is not None:
        kwargs["grad_fn"] = _grad_fn(apply_fn, *calib)
    views = tree.select(params, include=include)
    pruned, masks, report = prune_lib.prune(
        params, job.method, job.pattern, job.sparsity, include=include,
        tokens=_tokens_per_layer(model, views, job.tome_r), on_indivisible="skip", **kwargs,
    )  # fmt: skip
    result: dict[str, Any] = dict(
        source=job.source, method=job.method, pattern=job.pattern, tome_r=job.tome_r,
        permuted=bool(perms), sparsity=report["summary"]["pruned_layers_sparsity"],
        global_sparsity=report["summary"]["sparsity"], skipped=report["skipped"],
        macs=_mac_report(model, job.pattern, job.tome_r),
    )  # fmt: skip
    final = pruned
    if sets is not None:
        test = sets["test"] if job.eval_images is None else tuple(
            a[: job.eval_images] for a in sets["test"]
        )
        dense_fn = model.apply_fn(0)
        result["acc_dense"] = distill.evaluate(model.params, dense_fn, *test)
        if job.tome_r:
            result["acc_dense_tome"] = distill.evaluate(params, apply_fn, *test)
        result["acc_pruned"] = distill.evaluate(pruned, apply_fn, *test)
        result["acc_distilled"] = result["acc_pruned"]
        if job.distill_steps:
            config = distill.Config(
                learning_rate=job.distill_lr, num_steps=job.distill_steps,
                warmup_steps=max(1, job.distill_steps // 10), batch_size=job.batch_size,
                seed=job.seed, log_every=max(1, job.distill_steps // 10), progress=job.progress,
            )  # fmt: skip
            final, summary = distill.distill(
                pruned, params, masks, apply_fn, sets["train"], config, _distill_dir(out, job),
                teacher_apply_fn=dense_fn,
            )  # fmt: skip
            result["acc_distilled"] = distill.evaluate(final, apply_fn, *test)
            result["distill"] = {k: summary[k] for k in ("steps", "seconds") if k in summary}
    result["seconds"] = time.perf_counter() - started
    meta = {"job": dataclasses.asdict(job), "result": _jsonable(result)}
    if model.config is not None:
        meta["vit_config"] = dataclasses.asdict(model.config)
    checkpoint.save_params(out / "checkpoint", final, masks, meta)
    _write_report(out, result, report, fits)
    return result


def _distill_dir(out: Path, job: PruneJob) -> Path:
    """``out/distill``: resumed when the same job reruns, started afresh for another job."""
    workdir, stamp = out / "distill", out / "distill.job.json"
    text = json.dumps(dataclasses.asdict(job), sort_keys=True)
    if workdir.exists() and (not stamp.exists() or stamp.read_text() != text):
        shutil.rmtree(workdir)
    stamp.write_text(text)
    return workdir


def _layer_inputs(model: Model, params, calib, tome_r: int) -> dict[str, np.ndarray]:
    if model.config is None or calib is None:
        raise ValueError("--data: calibration inputs need a ViT source and data.")
    images = distill.prepare_images(calib[0])
    _, inputs = vit.layer_inputs(model.config, params, images, tome_r)
    return {p: np.asarray(x[:4096]) for p, x in inputs.items()}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda o: getattr(o, "tolist", lambda: str(o))()))


def _write_report(out: Path, result: dict, report: dict, fits: analysis.Analysis) -> None:
    """``report.json``, ``report.md`` and ``report.png`` (per-layer sparsity, accuracy, MACs)."""
    (out / "report.json").write_text(json.dumps(_jsonable(result), indent=2))
    layers = sorted(report["summary"]["layers"], key=lambda r: tree.natural_key(r["path"]))
    _plot_report(layers, result, out / "report.png")
    lines = [f"# mpjax prune: {result['method']} {result['pattern']}", ""]
    lines += ["| quantity | value |", "| --- | --- |"]
    lines += [f"| {k} | {_fmt(result.get(k))} |" for k in RESULT_KEYS if k in result]
    if result.get("macs"):
        m = result["macs"]
        lines.append(f"| MACs per image, dense -> pruned | {_macs_text(m['dense_gmac'])} -> "
                     f"{_macs_text(m['pruned_gmac'])} ({100 * m['reduction']:.2f}% fewer) |")
    lines += ["", "![report](report.png)", "", "![ESD fits](analysis/esd_grid.png)", "",
              "| layer | shape | sparsity | pattern | sigma_plus | bulk fraction |",
              "| --- | --- | --- | --- | --- | --- |"]
    rows = {r["path"]: r for r in fits.rows}
    for r in layers:
        f = rows.get(r["path"], {})
        lines.append(f"| {r['path']} | {r['shape']} | {r['sparsity']:.3f} | {r['pattern'] or '-'} "
                     f"| {_fmt(f.get('sigma_plus'))} | {_fmt(f.get('bulk_fraction'))} |")
    if result.get("skipped"):
        lines += ["", "Left dense:"] + [f"- {p}: {why}" for p, why in result["skipped"].items()]
    (out / "report.md").write_text("\n".join(lines) + "\n")


RESULT_KEYS = ("source", "tome_r", "permuted", "sparsity", "global_sparsity", "acc_dense",
               "acc_dense_tome", "acc_pruned", "acc_distilled", "seconds")


def _plot_report(layers: list[dict], result: dict, path: Path) -> None:
    """Per-layer sparsity, accuracy at each stage, and MACs with and without ToMe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4), gridspec_kw={"width_ratios": [3, 1, 1]})
    names = [r["path"].replace("Transformer/encoderblock_", "b").replace("/kernel", "")
             .replace("MultiHeadDotProductAttention_0", "attn").replace("MlpBlock_0", "mlp")
             for r in layers]
    axes[0].bar(range(len(layers)), [r["sparsity"] for r in layers], color="tab:blue")
    axes[0].set_xticks(range(len(layers)), names, rotation=90, fontsize=7)
    axes[0].set_ylabel("sparsity")
    axes[0].set_title(f"{result['method']} {result['pattern']}: sparsity per layer")
    stages = [k for k in ("acc_dense", "acc_dense_tome", "acc_pruned", "acc_distilled")
              if k in result]
    axes[1].bar([k.removeprefix("acc_") for k in stages], [result[k] for k in stages],
                color=["tab:gray", "tab:gray", "tab:red", "tab:green"][: len(stages)])
    axes[1].set_ylim(0, 1)
    axes[1].tick_params(axis="x", rotation=45)
    axes[1].set_title("test accuracy")
    if result.get("macs"):
        m = result["macs"]
        axes[2].bar(["dense", f"pruned\n(ToMe r={result['tome_r']})"],
                    [m["dense_gmac"], m["pruned_gmac"]], color=["tab:gray", "tab:purple"])
        axes[2].set_title(f"GMAC per image ({100 * m['reduction']:.1f}% fewer)")
        axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    else:
        axes[2].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _macs_text(gmac: float) -> str:
    return f"{gmac:.4f} GMAC" if gmac >= 0.1 else f"{gmac * 1e3:.4f} MMAC"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def format_table(result: dict[str, Any]) -> str:
    """The demo's plain-text summary table."""
    rows = [("dense accuracy", result.get("acc_dense")),
            ("pruned, before distillation", result.get("acc_pruned")),
            ("pruned, after distillation", result.get("acc_distilled")),
            ("sparsity of pruned layers", result.get("sparsity")),
            ("MAC reduction", (result.get("macs") or {}).get("reduction"))]
    if "acc_dense_tome" in result:
        rows.insert(1, (f"dense + ToMe r={result['tome_r']}", result["acc_dense_tome"]))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {_fmt(v)}" for name, v in rows)


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    if prog == "mpjax prune":
        p.add_argument("source", help="orbax dir, .npz, .safetensors, vit-ti16/b16/l16 or 'shipped'")
    p.add_argument("--out", required=prog == "mpjax prune", default="runs/demo")
    p.add_argument("--method", default="magnitude", choices=prune_lib.METHODS)
    p.add_argument("--pattern", default="unstructured", help="'unstructured' or K:N, e.g. 2:4")
    p.add_argument("--sparsity", type=float, default=None, help="in [0, 1); implied by K:N")
    p.add_argument("--data", default=None, help="fashion-mnist, mnist or an IDX directory")
    p.add_argument("--data-dir", default=None, help="where the named dataset lives")
    p.add_argument("--tome", type=int, default=0, help="ToMe merges per block")
    p.add_argument("--permute", action="store_true", help="N:M input-channel permutation")
    p.add_argument("--distill-steps", type=int, default=0)
    p.add_argument("--distill-lr", type=float, default=5e-4)
    p.add_argument("--calib-images", type=int, default=256)
    p.add_argument("--eval-images", type=int, default=None)
    p.add_argument("--include", default=None, help="glob of layers to prune")
    p.add_argument("--seed", type=int, default=0)
    return p


def _job(args: argparse.Namespace, source: str) -> PruneJob:
    return PruneJob(source=source, out=args.out, method=args.method, pattern=args.pattern,
                    sparsity=args.sparsity, data=args.data, data_dir=args.data_dir,
                    tome_r=args.tome, permute=args.permute, distill_steps=args.distill_steps,
                    distill_lr=args.distill_lr, calib_images=args.calib_images,
                    eval_images=args.eval_images, include=args.include, seed=args.seed)


def main_prune(argv: list[str] | None = None) -> int:
    """``mpjax prune SOURCE --method M --pattern P --sparsity S --out DIR [--data D] ...``."""
    args = _parser("mpjax prune").parse_args(argv)
    result = run(_job(args, args.source))
    print(format_table(result) if "acc_dense" in result else json.dumps(_jsonable(result), indent=2))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


#: The demo: CAST 2:4 with a permutation and ToMe on the shipped ViT, then a short distillation.
DEMO = dict(method="cast", pattern="2:4", data="fashion-mnist", tome=1, permute=True,
            distill_steps=300)


def main_demo(argv: list[str] | None = None) -> int:
    """``mpjax demo [--out DIR]``: the full pipeline on the shipped Fashion-MNIST ViT."""
    parser = _parser("mpjax demo")
    parser.set_defaults(**DEMO)
    args = parser.parse_args(argv)
    result = run(_job(args, SHIPPED))
    print(format_table(result))
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0
