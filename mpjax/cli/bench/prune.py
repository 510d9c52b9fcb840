"""CAST N:M projection on a ViT-B/16-shaped tree: wall time and peak memory.

The tree has timm/torch layout with a *fused* qkv: per block ``attn.qkv.weight``
(2304 x 768), ``attn.proj.weight`` (768 x 768), ``mlp.fc1.weight`` (3072 x 768),
``mlp.fc2.weight`` (768 x 3072): 12 blocks x 4 = 48 matrices, 85M weights. Weights are
iid ``N(0, 1/d_in)``; calibration inputs are 4096 correlated Gaussian rows per layer
(``X = Z A``, ``A`` a random mixing with a growing column scale), so the covariance blocks
are not diagonal. Inputs are streamed one layer at a time into their ``n x n`` covariance
blocks before the clock starts (the capture stage); the timed part is the CAST projection
(and, for 2:4, the whole ``prune(method="cast")`` call with its unstructured stage and report).

Phases (each in its own process so ``ru_maxrss`` is the phase's peak):

* ``2:4``: CAST 2:4 (6 patterns) on all 48 matrices; target <= 60 s.
* ``8:16``: CAST 8:16 with all 12870 patterns on the 24 MLP matrices; target peak memory
  <= 4 GB.
* ``posttrain``: the post-training baselines at 2:4 on all 48 matrices from the Gram matrices
  ``H = X^T X`` of the same inputs (accumulated before the clock starts): magnitude (the
  baseline of the ratios), Wanda, SparseGPT, and the refit of the magnitude masks
  (``mpjax.pruning.reconstruct``, ``--refit-iters`` CG steps at most); each timed call
  prints its wall and CPU time and the process's peak memory so far. Targets: each <= 60 s,
  peak <= 4 GB.

Wall time depends on what else runs on the machine: ``cast_cpu_s`` (process CPU time) and
``load_avg_1min`` are printed alongside it.

Usage: ``python -m mpjax.cli.bench.prune [--phase all|2:4|8:16|posttrain] [--blocks 12]
[--rows 4096] [--refit-iters 10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

SHAPES = {"attn.qkv": (2304, 768), "attn.proj": (768, 768), "mlp.fc1": (3072, 768),
          "mlp.fc2": (768, 3072)}


def vit_b16_tree(blocks: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Torch-layout ``{blocks.i.<name>.weight: (d_out, d_in)}`` with N(0, 1/d_in) entries."""
    rng = np.random.default_rng(seed)
    return {f"blocks.{b}.{name}.weight": (rng.standard_normal((o, i), np.float32) / np.sqrt(i))
            for b in range(blocks) for name, (o, i) in SHAPES.items()}


def calibration(params: dict[str, np.ndarray], rows: int, seed: int = 1):
    """Yield ``(path, X)``: correlated Gaussian inputs ``(rows, d_in)``, one layer at a time."""
    rng = np.random.default_rng(seed)
    mix = {}
    for p, W in params.items():
        d = W.shape[1]
        if d not in mix:
            A = rng.standard_normal((d, d), np.float32) / np.sqrt(d) + np.eye(d, dtype=np.float32)
            mix[d] = A * np.linspace(0.2, 2.0, d, dtype=np.float32)[None, :]
        yield p, rng.standard_normal((rows, d), np.float32) @ mix[d]


def peak_rss_gb() -> float:
    """``ru_maxrss`` of this process in GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_phase(phase: str, blocks: int, rows: int, chunk: int) -> dict:
    """Run one phase in this process and return its measurements."""
    from mpjax import tree
    from mpjax.arch import parse_pattern
    from mpjax.pruning import cast, prune, validate_nm

    params = vit_b16_tree(blocks)
    if phase == "8:16":
        params = {p: w for p, w in params.items() if ".mlp." in p}
    k, n = parse_pattern(phase)
    views = tree.select(params)
    # Capture stage (not timed): stream one layer's inputs at a time into its n x n blocks.
    covs = {p: cast.block_covariances(X, n, max_rows=rows) for p, X in calibration(params, rows)}
    rss_data = peak_rss_gb()
    t0, c0 = time.perf_counter(), time.process_time()
    pats = jnp.asarray(cast.candidate_patterns(k, n, exhaustive=True))
    costs = {}
    for p, v in views.items():
        res = cast.cast_matrix(jnp.asarray(params[p]), covs[p], pats, k=k, n=n, chunk=chunk)
        validate_nm({p: np.asarray(res.mask)}, k, n, views={p: v})
        costs[p] = (float(res.cost), float(res.magnitude_cost))
    jax.block_until_ready(res.weights)
    t_cast, c_cast = time.perf_counter() - t0, time.process_time() - c0
    out = dict(phase=phase, layers=len(views), patterns=int(pats.shape[0]), rows=rows,
               cast_wall_s=round(t_cast, 2), cast_cpu_s=round(c_cast, 2),
               peak_rss_gb_after_covariances=round(rss_data, 3),
               cast_not_above_magnitude=all(c <= m * (1 + 1e-5) for c, m in costs.values()),
               mean_cost_ratio=round(float(np.mean([c / m for c, m in costs.values()])), 4))
    if phase == "2:4":
        t0 = time.perf_counter()
        c0 = time.process_time()
        _, m, rep = prune(params, "cast", "2:4", calib_covs=covs)
        validate_nm(m, 2, 4)
        out["prune_end_to_end_wall_s"] = round(time.perf_counter() - t0, 2)
        out["prune_end_to_end_cpu_s"] = round(time.process_time() - c0, 2)
    out["peak_rss_gb"] = round(peak_rss_gb(), 3)
    out["load_avg_1min"] = round(os.getloadavg()[0], 2)
    out["cpus"] = os.cpu_count()
    return out


def _timed(fn):
    """``(result, wall_s, cpu_s)`` of ``fn()`` with every output array ready."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - t0, time.process_time() - c0


def run_posttrain(blocks: int, rows: int, refit_iters: int) -> list[dict]:
    """Magnitude, Wanda, SparseGPT (2:4) and the refit of the magnitude masks, timed."""
    from mpjax.pruning import prune, reconstruct, validate_nm

    params = {p: w.astype(np.float32) for p, w in vit_b16_tree(blocks).items()}
    # Capture stage (not timed): one layer's inputs at a time into H = X^T X.
    hess = {p: jnp.asarray(X.T @ X) for p, X in calibration(params, rows)}
    base = dict(layers=len(params), rows=rows, pattern="2:4")
    out, runs = [], {}
    for name in ("magnitude", "wanda", "sparsegpt"):
        kw = {} if name == "magnitude" else dict(calib_hessians=hess)
        (_, m, _), wall, cpu = _timed(lambda n=name, kw=kw: prune(params, n, "2:4", **kw))
        validate_nm(m, 2, 4)
        runs[name] = m
        out.append(dict(base, step=name, wall_s=round(wall, 2), cpu_s=round(cpu, 2),
                        peak_rss_gb=round(peak_rss_gb(), 3)))
    (_, errs), wall, cpu = _timed(lambda: reconstruct(
        params, runs["magnitude"], hessians=hess, max_iter=refit_iters))
    before = float(np.mean([e.before for e in errs.values()]))
    after = float(np.mean([e.after for e in errs.values()]))
    out.append(dict(base, step="refit(magnitude)", wall_s=round(wall, 2), cpu_s=round(cpu, 2),
                    peak_rss_gb=round(peak_rss_gb(), 3), mean_error_before=round(before, 4),
                    mean_error_after=round(after, 4),
                    max_residual=float(max(e.residual for e in errs.values())),
                    max_iterations=max(e.iterations for e in errs.values())))
    ref = out[0]["wall_s"]
    for row in out:
        row["x_magnitude"] = round(row["wall_s"] / ref, 2) if ref else None
        row["load_avg_1min"] = round(os.getloadavg()[0], 2)
    return out


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``mpjax bench prune``."""
    ap = argparse.ArgumentParser(prog="mpjax bench prune", description=__doc__.split("\n")[0])
    ap.add_argument("--phase", default="all", choices=["all", "2:4", "8:16", "posttrain"])
    ap.add_argument("--blocks", type=int, default=12, help="ViT blocks (12 for ViT-B/16)")
    ap.add_argument("--rows", type=int, default=4096, help="calibration rows per layer")
    ap.add_argument("--chunk", type=int, default=256, help="patterns per scan step")
    ap.add_argument("--refit-iters", type=int, default=10,
                    help="most conjugate-gradient steps of the refit (posttrain phase)")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one JSON line per phase; returns 0."""
    args = build_parser().parse_args(argv)
    if args.refit_iters < 1:
        raise ValueError(f"--refit-iters {args.refit_iters}: must be at least 1.")
    if args.phase == "posttrain":
        rows = run_posttrain(args.blocks, args.rows, args.refit_iters)
        print(f"{'step':<18} {'wall_s':>8} {'cpu_s':>8} {'peak_GB':>8} {'x_magnitude':>11}")
        for r in rows:
            print(f"{r['step']:<18} {r['wall_s']:8.2f} {r['cpu_s']:8.2f} "
                  f"{r['peak_rss_gb']:8.3f} {r['x_magnitude']:11.2f}")
        for r in rows:
            print(json.dumps(r), flush=True)
        return 0
    if args.phase != "all":
        print(json.dumps(run_phase(args.phase, args.blocks, args.rows, args.chunk)), flush=True)
        return 0
    for phase in ("2:4", "8:16", "posttrain"):
        cmd = [sys.executable, "-m", "mpjax.cli.bench.prune", "--phase", phase,
               "--blocks", str(args.blocks), "--rows", str(args.rows), "--chunk", str(args.chunk),
               "--refit-iters", str(args.refit_iters)]
        subprocess.run(cmd, check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
