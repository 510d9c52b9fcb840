"""Benchmark: the spectra kernel and ``mpjax analyze`` end to end, against numpy loops.

For each model of ``--models`` (random-init ViTs, the trees ``mpjax analyze vit-b16`` reads:
big_vision names, ``N(0, 1/d_in)`` float32 kernels), in one run:

* **kernel**: :func:`mpjax.mp.spectra.singular_values` of every weight matrix (the part of
  the analysis that scales with the model), against two numpy baselines over the same
  matrices: the Gram loop ``numpy.linalg.eigvalsh(A @ A.T)`` in float32 and the SVD loop
  ``numpy.linalg.svd(W, compute_uv=False)``, both with numpy's default BLAS threading.
  Medians of ``--repeats`` interleaved rounds (each round runs every stage once, so a
  change in machine load hits all alike); wall and process-CPU seconds.
* **CLI**: ``mpjax analyze MODEL --out DIR`` (plots included) as a subprocess, cold (a fresh
  compilation-cache folder) and warm (the same folder again; median of ``--cli-repeats``),
  with the peak RSS of the command's process tree (the command and its plot worker,
  :mod:`mpjax.cli.bench.measure`) against the model's float32 parameter bytes.

Acceptance lines compare ViT-B/16's kernel with its Gram loop (>= 1.5x), its warm CLI with
the same Gram loop (<= 2.5x) and ViT-L/16's peak RSS with its parameter bytes (<= 1.5x).

Run: ``mpjax bench spectra [--models vit-ti16,vit-b16,vit-l16]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from mpjax import tree
from mpjax.cli.bench import measure
from mpjax.mp import spectra

MODELS = ("vit-ti16", "vit-b16", "vit-l16")
def build_parser() -> argparse.ArgumentParser:
    """The ``mpjax bench spectra`` argument parser."""
    ap = argparse.ArgumentParser(prog="mpjax bench spectra", description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated presets")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of kernel vs numpy loops")
    ap.add_argument("--cli-repeats", type=int, default=1, help="warm CLI runs (0: no CLI)")
    ap.add_argument("--method", default="gram", choices=spectra.METHODS)
    ap.add_argument("--baselines", default="gram,svd", help="numpy loops to run: gram, svd")
    ap.add_argument("--blas-threads", type=int, default=0,
                    help="BLAS threads of the numpy loops (0: numpy's default)")  # fmt: skip
    return ap


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall and process-CPU seconds of one call, and its result."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def _gram_loop(mats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Descending singular values by float32 ``eigvalsh`` of the smaller Gram matrix."""
    out = {}
    for path, w in mats.items():
        a = np.asarray(w, np.float32)
        a = a.T if a.shape[0] > a.shape[1] else a
        out[path] = np.sqrt(np.maximum(np.linalg.eigvalsh(a @ a.T)[::-1], 0.0))
    return out


def _svd_loop(mats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {p: np.linalg.svd(np.asarray(w, np.float32), compute_uv=False) for p, w in mats.items()}


def _limited(fn: Callable[[], Any], threads: int) -> Callable[[], Any]:
    """``fn`` run with BLAS limited to ``threads`` threads (0: as numpy sets it up)."""
    if not threads:
        return fn

    def run() -> Any:
        with threadpool_limits(threads, user_api="blas"):
            return fn()

    return run


def kernel_times(
    params: Any,
    repeats: int,
    method: str,
    baselines: tuple[str, ...] = ("gram", "svd"),
    blas_threads: int = 0,
) -> dict[str, Any]:
    """Median ``(wall, cpu)`` of the kernel and the numpy loops, and the kernel's error
    (against the SVD loop, else the Gram loop)."""
    views = tree.select(params)
    mats = tree.matrices(params, views)
    loops = {"gram": _gram_loop, "svd": _svd_loop}
    stages = {"kernel": lambda: spectra.singular_values(params, views, method=method)}
    for name in baselines:
        stages[f"numpy {name}"] = _limited(lambda f=loops[name]: f(mats), blas_threads)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in stages}
    results: dict[str, Any] = {}
    for _ in range(repeats):  # interleaved, so a load change hits every stage alike
        for name, fn in stages.items():
            wall, cpu, results[name] = _timed(fn)
            times[name].append((wall, cpu))
    ref = results["numpy svd" if "svd" in baselines else "numpy gram"]
    err = max(float(np.max(np.abs(results["kernel"][p] - ref[p]) / ref[p][0])) for p in ref)
    med = {k: tuple(statistics.median(x) for x in zip(*v, strict=True)) for k, v in times.items()}
    return {"matrices": len(mats), "err": err, **med}


def cli_run(model: str, out: Path, cache: Path) -> tuple[float, float, int]:
    """``(seconds, peak RSS bytes, exit status)`` of ``mpjax analyze MODEL --out OUT``."""
    env = {k: v for k, v in os.environ.items() if k != "MPJAX_NO_COMPILE_CACHE"}
    env["MPJAX_COMPILE_CACHE"] = str(cache)
    argv = [sys.executable, "-m", "mpjax", "analyze", model, "--out", str(out)]
    m = measure.run(argv, env=env)
    if m.rc:
        print(f"  mpjax analyze {model} failed: {m.stderr.strip()[-300:]}", file=sys.stderr)
    return m.seconds, m.peak_rss, m.rc


def cli_times(model: str, repeats: int) -> dict[str, float]:
    """Cold (fresh cache) and median warm CLI seconds, and the largest peak RSS."""
    with tempfile.TemporaryDirectory(prefix="mpjax-bench-") as tmp:
        cache = Path(tmp) / "cache"
        cold, rss, rc = cli_run(model, Path(tmp) / "out0", cache)
        warm = []
        for i in range(repeats):
            seconds, peak, status = cli_run(model, Path(tmp) / f"out{i + 1}", cache)
            warm.append(seconds)
            rss, rc = max(rss, peak), rc or status
    return {"cold": cold, "warm": statistics.median(warm), "rss": rss, "rc": rc}


def param_bytes(params: Any) -> int:
    """Bytes of every floating leaf stored as float32."""
    return sum(4 * int(np.size(leaf)) for leaf in tree.flatten(params).values())


def _choices(flag: str, text: str, allowed: tuple[str, ...]) -> list[str]:
    """The comma-separated names of ``text``, each one of ``allowed``."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names or any(m not in allowed for m in names):
        raise ValueError(f"{flag} {text!r}: expected a comma-separated subset of {allowed}.")
    return names


def _print_tables(rows: dict[str, dict[str, Any]]) -> None:
    """The kernel table (wall / CPU seconds, speed-ups) and the CLI table."""
    loops = [k for k in ("numpy gram", "numpy svd") if all(k in r for r in rows.values())]
    print(f"\n{'model':<10}{'mats':>5}" + "".join(f"{k:>16}" for k in ["kernel", *loops])
          + "".join(f"{k.split()[1] + '/kernel':>13}" for k in loops))  # fmt: skip
    for model, r in rows.items():
        cells = "".join(f"{r[k][0]:>9.3f} /{r[k][1]:>5.2f}" for k in ["kernel", *loops])
        ratios = "".join(f"{r[k][0] / r['kernel'][0]:>12.2f}x" for k in loops)
        print(f"{model:<10}{r['matrices']:>5}{cells}{ratios}")
    cli = {m: r for m, r in rows.items() if "cold" in r}
    if cli:
        print(f"\n{'model':<10}{'CLI cold':>10}{'CLI warm':>10}{'warm/kernel':>13}"
              f"{'warm/gram':>11}{'peak RSS':>11}{'params':>10}{'RSS/params':>12}")  # fmt: skip
    for model, r in cli.items():
        k, g = r["kernel"][0], r.get("numpy gram", (float("nan"),))[0]
        print(f"{model:<10}{r['cold']:>9.2f}s{r['warm']:>9.2f}s{r['warm'] / k:>12.2f}x"
              f"{r['warm'] / g:>10.2f}x{r['rss'] / 2**20:>8.0f} MB{r['params'] / 2**20:>7.0f} MB"
              f"{r['rss'] / r['params']:>11.2f}x")  # fmt: skip


def _targets(rows: dict[str, dict[str, Any]]) -> None:
    """Print the acceptance checks whose models (and baselines) were run."""
    checks = []
    r = rows.get("vit-b16", {})
    if "numpy gram" in r:
        ratio = r["numpy gram"][0] / r["kernel"][0]
        checks.append((f"vit-b16 kernel vs numpy gram loop: {ratio:.2f}x (>= 1.5x)", ratio >= 1.5))
        if r.get("rc"):
            checks.append(("vit-b16 CLI: the command failed (see above)", False))
        elif "warm" in r:
            ratio = r["warm"] / r["numpy gram"][0]
            checks.append((f"vit-b16 CLI warm / numpy gram loop: {ratio:.2f}x (<= 2.5x)",
                           ratio <= 2.5))  # fmt: skip
    if "rss" in rows.get("vit-l16", {}) and not rows["vit-l16"].get("rc"):
        ratio = rows["vit-l16"]["rss"] / rows["vit-l16"]["params"]
        checks.append((f"vit-l16 CLI peak RSS / params: {ratio:.2f}x (<= 1.5x)", ratio <= 1.5))
    for text, ok in checks:
        print(f"{'PASS' if ok else 'MISS'}  {text}")


def _measure(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Every table row: kernel and numpy loops in this process, then the CLI runs."""
    models = _choices("--models", args.models, MODELS)
    baselines = tuple(_choices("--baselines", args.baselines, ("gram", "svd")))
    if args.repeats < 1 or args.cli_repeats < 0 or args.blas_threads < 0:
        raise ValueError("--repeats must be >= 1, --cli-repeats and --blas-threads >= 0.")
    from mpjax.models.sources import random_init  # flax: only when run

    rows: dict[str, dict[str, Any]] = {}
    for model in models:
        params = random_init(model)
        rows[model] = kernel_times(params, args.repeats, args.method, baselines,
                                   args.blas_threads)  # fmt: skip
        rows[model]["params"] = param_bytes(params)
        del params
        if args.cli_repeats:
            rows[model].update(cli_times(model, args.cli_repeats))
        print(f"{model}: done ({os.getloadavg()[0]:.1f} load average)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the tables; returns 0 (1 if the kernel's spectra disagree with numpy's)."""
    args = build_parser().parse_args(argv)
    rows = _measure(args)
    _print_tables(rows)
    threads = args.blas_threads or "numpy's default"
    print(f"\nwall s / process-CPU s, medians of {args.repeats} rounds (numpy loops: BLAS "
          f"threads {threads}); CLI warm: median of {args.cli_repeats}; os.cpu_count() = "
          f"{os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    err = max(r["err"] for r in rows.values())
    print(f"max |s_kernel - s_numpy| / s_1 = {err:.2e}")
    _targets(rows)
    failed = [m for m, r in rows.items() if r.get("rc")]
    return 0 if err < 1e-3 and not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
