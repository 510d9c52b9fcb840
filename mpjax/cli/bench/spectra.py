"""Benchmark: full spectral analysis of a ViT-B/16-shaped parameter tree vs a numpy SVD loop.

The tree uses big_vision names and layouts: 12 encoder blocks, each with separate
``query``/``key``/``value`` DenseGeneral kernels ``(768, 12, 64)``, ``out`` ``(12, 64, 768)``,
``MlpBlock_0/Dense_0`` ``(768, 3072)`` and ``Dense_1`` ``(3072, 768)``: 6 x 12 = 72 block
matrices, plus the patch-embedding conv ``(16, 16, 3, 768)`` and the head ``(768, 1000)``,
74 matrices in all (49 of 768x768, 24 of 768x3072 / 3072x768, 1 of 1000x768). Weights are
``N(0, 1/d_in)`` float32 from numpy.

Timed in one process, medians over ``--repeats`` interleaved rounds (each round runs every
stage once, so a change in machine load hits all stages alike); wall and process-CPU seconds:
  * mpjax: :func:`mpjax.mp.analysis.analyze` (finite check, batched Gram spectra, BEMA fits,
    Hill exponent, stable rank), after one warm-up call whose time (compilation) is shown,
    and :func:`mpjax.mp.spectra.singular_values` alone;
  * numpy: ``numpy.linalg.svd(W, compute_uv=False)`` per layer (values only, the fair
    baseline), plus the same fits (timed separately and added).
Peak memory is the process's ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (peak RSS,
parameters included).

Run: ``python -m mpjax.cli.bench.spectra`` or ``mpjax bench spectra``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mpjax import tree
from mpjax.mp import analysis, spectra
from mpjax.mp import fits as mp


def vit_b16_params(
    seed: int = 0,
    depth: int = 12,
    width: int = 768,
    mlp: int = 3072,
    heads: int = 12,
    classes: int = 1000,
) -> dict[str, Any]:
    """Random ``N(0, 1/d_in)`` float32 weights with ViT-B/16's big_vision names and shapes."""
    rng = np.random.default_rng(seed)

    def normal(shape: tuple[int, ...], d_in: int) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) / np.sqrt(d_in)).astype(np.float32)

    hd = width // heads
    blocks = {}
    for i in range(depth):
        attn = {k: {"kernel": normal((width, heads, hd), width)} for k in ("query", "key", "value")}
        attn["out"] = {"kernel": normal((heads, hd, width), width)}
        blocks[f"encoderblock_{i}"] = {
            "MultiHeadDotProductAttention_0": attn,
            "MlpBlock_0": {
                "Dense_0": {"kernel": normal((width, mlp), width)},
                "Dense_1": {"kernel": normal((mlp, width), mlp)},
            },
        }
    return {
        "embedding": {"kernel": normal((16, 16, 3, width), 16 * 16 * 3)},
        "Transformer": blocks,
        "head": {"kernel": normal((width, classes), width)},
    }


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall and process-CPU seconds of one call, and its result."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def _numpy_spectra(params: Any, views: dict[str, tree.LayerView]) -> dict[str, np.ndarray]:
    return {p: np.linalg.svd(w, compute_uv=False) for p, w in tree.matrices(params, views).items()}


def _fits(svals: dict[str, np.ndarray], views: dict[str, tree.LayerView]) -> None:
    for p, s in svals.items():
        mp.fit(s, views[p].shape)
        mp.hill_alpha(s)
        mp.stable_rank(s)


def main(argv: list[str] | None = None) -> int:
    """Print the timing table; returns 0 (1 if the spectra disagree with numpy)."""
    ap = argparse.ArgumentParser(prog="mpjax bench spectra", description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each side")
    ap.add_argument("--depth", type=int, default=12, help="encoder blocks (12 = ViT-B)")
    ap.add_argument("--method", default="gram", choices=spectra.METHODS)
    args = ap.parse_args(argv)

    params = vit_b16_params(depth=args.depth)
    views = tree.select(params)
    shapes: dict[tuple[int, int], int] = {}
    for v in views.values():
        shapes[v.shape] = shapes.get(v.shape, 0) + 1
    print(
        f"ViT-B/16-shaped tree: {len(views)} matrices "
        + ", ".join(f"{c} x {a}x{b}" for (a, b), c in shapes.items())
    )

    def run() -> analysis.Analysis:
        return analysis.analyze(params, spectra_method=args.method, progress=False)

    wall, cpu, report = _timed(run)
    print(
        f"first mpjax call (includes compilation): {wall:.3f} s wall, {cpu:.2f} s CPU", flush=True
    )
    stages: dict[str, Callable[[], Any]] = {
        "mpjax analysis": run,
        "mpjax spectra": lambda: spectra.singular_values(params, views, method=args.method),
        "numpy svd loop": lambda: _numpy_spectra(params, views),
    }
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in stages}
    for i in range(args.repeats):  # interleaved, so a load change hits every stage alike
        for name, fn in stages.items():
            wall, cpu, out = _timed(fn)
            times[name].append((wall, cpu))
            if name == "numpy svd loop":
                ref = out
        print(
            f"repeat {i + 1}: " + ", ".join(f"{k} {v[-1][0]:.3f} s" for k, v in times.items()),
            flush=True,
        )
    t_fits, c_fits, _ = _timed(lambda: _fits(ref, views))

    def med(name: str) -> tuple[float, float]:
        return tuple(statistics.median(x) for x in zip(*times[name], strict=True))

    (t_mpjax, c_mpjax), (t_spec, c_spec) = med("mpjax analysis"), med("mpjax spectra")
    t_np_spec, c_np_spec = med("numpy svd loop")
    # the numpy side of the analysis: svd loop + the same fits
    t_np, c_np = t_np_spec + t_fits, c_np_spec + c_fits
    err = max(float(np.max(np.abs(report.spectra[p] - ref[p])) / ref[p][0]) for p in ref)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"{'stage (wall s / CPU s)':<32}{'mpjax':>16}{'numpy loop':>16}{'speed-up':>10}")
    for name, a, ca, b, cb in [
        ("spectra only", t_spec, c_spec, t_np_spec, c_np_spec),
        ("full analysis (spectra + fits)", t_mpjax, c_mpjax, t_np, c_np),
    ]:
        print(f"{name:<32}{a:>8.3f} /{ca:>6.2f}{b:>9.3f} /{cb:>6.2f}{b / a:>9.2f}x")
    print(
        f"medians of {args.repeats} runs; fits alone {t_fits:.3f} s; os.cpu_count() = "
        f"{os.cpu_count()}, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"max |s_mpjax - s_numpy| / s_1 = {err:.2e}; peak RSS (ru_maxrss) = {peak_mb:.0f} MB")
    return 0 if err < 1e-3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
