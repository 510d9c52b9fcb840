"""``mpjax bench runtime``: dense vs 2:4-sparse ViT throughput on a GPU, plus export parity.

Example (the prepared GPU run is ``scripts/gpu_runtime.sh``)::

    mpjax bench runtime --arch vit-b16,vit-l16 --batch 64,256 --tome 0,8 \\
        --dtype fp16,bf16 --json notebooks/results/gpu_runtime_H100.json

Always: a small 2:4-pruned Flax ViT is exported and rebuilt in torch, and its fp32 CPU
logits are compared with Flax's (``parity_max_abs_diff``; needs JAX). With CUDA: for every
(arch, dtype) a random-weight ViT with 2:4 magnitude masks on qkv/proj/fc1/fc2 is timed
dense and sparse (cuSPARSELt, compressed weights, fused bias and output transpose), at
every batch and ToMe ``r``, eagerly and CUDA-graph replayed, median of ``--iters`` CUDA-event
timings after warm-up; per-layer GEMM timings and the MAC accounting go into the JSON too.
Without CUDA it says so and exits 0: timings need a GPU, and none are made up.

torch is imported lazily (through :mod:`mpjax.torch_runtime`), so ``mpjax --help`` and
the results readers (:func:`load_results`) work without it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from mpjax.arch import vit_dims, vit_macs

DTYPES = {"fp16": "float16", "bf16": "bfloat16"}
SPARSE_PATTERNS = dict.fromkeys(("qkv", "proj", "fc1", "fc2"), "2:4")


def results_dir() -> Path:
    """Where GPU results are committed: ``$MPJAX_RESULTS_DIR`` or ``<repo>/notebooks/results``."""
    env = os.environ.get("MPJAX_RESULTS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "notebooks" / "results"


def load_results(directory: str | Path | None = None) -> list[dict[str, Any]]:
    """Every ``gpu_runtime_*.json`` with at least one CUDA-event-timed row, by file name."""
    out = []
    for path in sorted(Path(directory or results_dir()).glob("gpu_runtime_*.json")):
        data = json.loads(path.read_text())
        if any(r.get("timer") == "cuda_event" for r in data.get("rows", [])):
            out.append(dict(data, file=path.name))
    return out


def mac_summary(arch: str, tome: int) -> dict[str, float]:
    """Dense (no ToMe), dense+ToMe and 2:4+ToMe GMAC of a preset ViT."""
    base = vit_macs(arch)
    tome_only = vit_macs(arch, tome_r=tome)
    sparse = vit_macs(arch, SPARSE_PATTERNS, tome_r=tome)
    return {
        "dense_gmac": base.total / 1e9,
        "dense_tome_gmac": tome_only.total / 1e9,
        "sparse_tome_gmac": sparse.total / 1e9,
        "reduction": sparse.reduction,
    }


def flax_parity(
    tome_rs: tuple[int, ...] = (0, 2), seed: int = 0, workdir: str | None = None
) -> dict[str, Any]:
    """Export a small 2:4-pruned Flax ViT and compare torch fp32 CPU logits with Flax's.

    Needs JAX, :mod:`mpjax.models` and torch (all imported here, when called).

    Args:
      tome_rs: ToMe ``r`` values to compare at (one export each).
      seed: seed of the random weights and images.
      workdir: where the temporary export directory goes (default: the system's).

    Returns:
      ``{"max_abs_diff", "per_tome": {r: diff}, "dtype", "device", "config"}``.
    """
    import tempfile

    import jax
    import numpy as np
    import torch

    from mpjax import export, tree
    from mpjax.models import ViT, config_for, random_init
    from mpjax.pruning import apply_masks, nm_masks
    from mpjax.torch_runtime import build_model

    cfg = config_for(
        "fmnist",
        image_size=32,
        patch_size=8,
        num_classes=10,
        channels=3,
        hidden_size=64,
        num_heads=4,
        mlp_dim=128,
        num_layers=2,
    )
    params = random_init(cfg, seed)
    rng = np.random.default_rng(seed + 1)  # non-zero biases, class token and LayerNorm shifts
    params = tree.unflatten_like(
        params,
        {
            k: v + 0.05 * rng.standard_normal(v.shape).astype(v.dtype)
            for k, v in tree.flatten(params).items()
        },
    )
    views = tree.select(params, include=["*encoderblock_*/*/kernel"])
    masks = nm_masks(params, 2, 4, views=views)
    pruned = apply_masks(params, masks)
    x = np.random.default_rng(seed).normal(size=(4, 32, 32, 3)).astype(np.float32)
    per = {}
    cpu = jax.devices("cpu")[0]  # the check is fp32 on CPU even where JAX sees a GPU
    with tempfile.TemporaryDirectory(dir=workdir) as tmp, jax.default_device(cpu):
        for r in tome_rs:
            ref = np.asarray(
                jax.jit(lambda p, r=r: ViT(cfg).apply({"params": p}, x, tome_r=r))(pruned)
            )
            export.export_vit(params, cfg, tmp, masks=masks, tome_r=r)
            with torch.no_grad():
                out = build_model(tmp)(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
            per[r] = float(np.abs(out - ref).max())
    return {
        "max_abs_diff": max(per.values()),
        "per_tome": per,
        "dtype": "float32",
        "device": "cpu",
        "config": "2-block ViT, 32 px, patch 8, D=64, 2:4 on block Linears",
    }


def _parity(skip: bool) -> dict[str, Any]:
    if skip:
        return {"skipped": "--no-parity"}
    try:
        return flax_parity()
    except ImportError as err:
        return {"skipped": f"needs JAX and mpjax.models ({err})"}


def _base_row(args, arch: str, batch: int, dtype_name: str, tome: int, mode: str) -> dict:
    return {
        "arch": arch,
        "batch": batch,
        "dtype": dtype_name,
        "tome": tome,
        "mode": mode,
        "backend": args.backend,
        "macs": mac_summary(arch, tome),
    }


def _time_arch_dtype(args, arch: str, dtype_name: str, t0: float) -> tuple[list, list, dict]:
    """All rows of one (arch, dtype): GEMM table, then every batch x ToMe x mode.

    A kernel error is recorded in its row (``error``) instead of ending the run; rows past
    the time budget are recorded as skipped.
    """
    from mpjax.torch_runtime import bench

    grid = [(b, t, m) for b in args.batch for t in args.tome for m in args.modes]
    if time.monotonic() - t0 > args.budget_s:
        skipped = [_base_row(args, arch, b, dtype_name, t, m) for b, t, m in grid]
        return [dict(r, skipped="time budget exhausted") for r in skipped], [], {}
    dtype = bench.torch_dtype(DTYPES[dtype_name])
    dims = vit_dims(arch)
    shapes = bench.block_shapes(dims, min(args.batch))
    try:
        gemm = bench.gemm_timings(shapes, dtype, args.device, args.warmup, args.iters)
    except RuntimeError as err:
        gemm = [{"layer": s[0], "error": str(err)[:500]} for s in shapes]
    # The fused output transpose was once pathologically slow in fp16 (`docs/method/runtime.md`): avoid it then.
    fused = all(r.get("cslt_ms", 0) <= 2 * r.get("cslt_not_ms", 1) for r in gemm)
    try:
        kw = {"transpose_result": fused} if args.backend == "cslt" else {}
        dense, sparse, names = bench.timing_models(dims, dtype, args.device, args.backend, **kw)
    except (RuntimeError, ValueError) as err:
        rows = [_base_row(args, arch, b, dtype_name, t, m) for b, t, m in grid]
        return [dict(r, error=str(err)[:500]) for r in rows], gemm, {"fused_transpose": fused}
    rows = []
    for batch, tome, mode in grid:
        row = dict(_base_row(args, arch, batch, dtype_name, tome, mode), n_sparse_layers=len(names))
        if time.monotonic() - t0 > args.budget_s:
            rows.append(dict(row, skipped="time budget exhausted"))
            continue
        x = bench.random_images(dims, batch, dtype, args.device)
        try:
            row.update(
                bench.bench_pair(dense, sparse, x, tome, mode == "graph", args.warmup, args.iters)
            )
        except RuntimeError as err:
            row["error"] = str(err)[:500]
        rows.append(row)
        print(_fmt(row), flush=True)
    del dense, sparse
    bench.free_memory(args.device)
    return rows, [dict(r, arch=arch, dtype=dtype_name) for r in gemm], {"fused_transpose": fused}


_HEAD = (
    f"{'arch':<9}{'batch':>6} {'dtype':<5}{'tome':>5} {'mode':<6}{'dense img/s':>12}"
    f"{'sparse img/s':>13}{'speedup':>9}"
)


def _fmt(row: dict[str, Any]) -> str:
    if "speedup" not in row:
        return (
            f"{row['arch']:<9}{row['batch']:>6} {row['dtype']:<5}{row['tome']:>5} "
            f"{row['mode']:<6} {row.get('skipped', row.get('error', ''))}"
        )
    return (
        f"{row['arch']:<9}{row['batch']:>6} {row['dtype']:<5}{row['tome']:>5} "
        f"{row['mode']:<6}{row['dense_img_s']:>12.1f}{row['sparse_img_s']:>13.1f}"
        f"{row['speedup']:>9.3f}"
    )


def _write(path: str | None, result: dict[str, Any], t0: float) -> None:
    if path:
        result["wall_s"] = time.monotonic() - t0
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(f"{path}.tmp")
        tmp.write_text(json.dumps(result, indent=1, default=str))
        os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    """The ``mpjax bench runtime`` argument parser."""
    ints = lambda s: [int(v) for v in s.split(",")]  # noqa: E731
    strs = lambda s: [v.strip() for v in s.split(",")]  # noqa: E731
    ap = argparse.ArgumentParser(prog="mpjax bench runtime", description=__doc__.split("\n")[0])
    ap.add_argument("--arch", type=strs, default=["vit-b16"], help="e.g. vit-b16,vit-l16")
    ap.add_argument("--batch", type=ints, default=[64])
    ap.add_argument("--tome", type=ints, default=[0, 8])
    ap.add_argument("--dtype", type=strs, default=["fp16", "bf16"])
    ap.add_argument("--modes", type=strs, default=["eager", "graph"])
    ap.add_argument("--backend", default="cslt", choices=("cslt", "wrapper"))
    ap.add_argument("--iters", type=int, default=50, help="timed calls per measurement (>= 50)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument(
        "--budget-s",
        type=float,
        default=240.0,
        help="stop starting new measurements after this many seconds",
    )
    ap.add_argument("--no-parity", action="store_true", help="skip the Flax parity check")
    ap.add_argument("--json", default=None, help="write the results object here")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the runtime benchmark; print a table; optionally write JSON. Returns 0 on success."""
    args = build_parser().parse_args(argv)
    for arch in args.arch:
        vit_dims(arch)
    bad = [d for d in args.dtype if d not in DTYPES] + [
        m for m in args.modes if m not in ("eager", "graph")
    ]
    if bad:
        raise ValueError(f"--dtype/--modes: unknown {bad}; use fp16,bf16 and eager,graph.")
    from mpjax.torch_runtime import bench

    t0 = time.monotonic()
    gpu = bench.cuda_device_name() if args.device == "cuda" else None
    cuda = gpu is not None
    if args.device == "cpu":  # plumbing test with emulated kernels; never a measurement
        device = "cpu (emulated kernels: plumbing test, not a measurement)"
    else:
        device = gpu or "cpu (no CUDA)"
    if args.iters < 50:
        print(f"note: --iters {args.iters} is below the protocol's 50 timed calls")
    result: dict[str, Any] = {
        "device": device,
        "versions": bench.versions(),
        "args": {k: v for k, v in vars(args).items() if k != "json"},
        "created_unix": time.time(),
        "parity": _parity(args.no_parity),
    }
    result["parity_max_abs_diff"] = result["parity"].get("max_abs_diff")
    print(
        f"device: {result['device']}; export->torch parity (fp32 CPU, vs Flax): "
        f"{result['parity_max_abs_diff']}"
    )
    result["macs"] = {f"{a}/tome{r}": mac_summary(a, r) for a in args.arch for r in args.tome}
    result.update(rows=[], gemm=[], choices={})
    if not cuda and args.device != "cpu":
        result["timing"] = "skipped: timing needs a CUDA GPU (cuSPARSELt 2:4 kernels)"
        print(result["timing"])
    else:
        print(_HEAD)
        for arch in args.arch:
            for dt in args.dtype:
                rows, gemm, choice = _time_arch_dtype(args, arch, dt, t0)
                result["rows"] += rows
                result["gemm"] += gemm
                result["choices"][f"{arch}/{dt}"] = choice
                _write(args.json, result, t0)  # partial results survive a kill
    _write(args.json, result, t0)
    if args.json:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
