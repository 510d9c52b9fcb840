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

Wall time depends on what else runs on the machine: ``cast_cpu_s`` (process CPU time) and
``load_avg_1min`` are printed alongside it.

Usage: ``python -m mpjax.cli.bench.prune [--phase all|2:4|8:16] [--blocks 12] [--rows 4096]``.
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


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``mpjax bench prune``."""
    ap = argparse.ArgumentParser(prog="mpjax bench prune", description=__doc__.split("\n")[0])
    ap.add_argument("--phase", default="all", choices=["all", "2:4", "8:16"])
    ap.add_argument("--blocks", type=int, default=12, help="ViT blocks (12 for ViT-B/16)")
    ap.add_argument("--rows", type=int, default=4096, help="calibration rows per layer")
    ap.add_argument("--chunk", type=int, default=256, help="patterns per scan step")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one JSON line per phase; returns 0."""
    args = build_parser().parse_args(argv)
    if args.phase != "all":
        print(json.dumps(run_phase(args.phase, args.blocks, args.rows, args.chunk)), flush=True)
        return 0
    for phase in ("2:4", "8:16"):
        cmd = [sys.executable, "-m", "mpjax.cli.bench.prune", "--phase", phase,
               "--blocks", str(args.blocks), "--rows", str(args.rows), "--chunk", str(args.chunk)]
        subprocess.run(cmd, check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
