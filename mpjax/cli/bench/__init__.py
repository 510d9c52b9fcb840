"""``mpjax bench NAME``: benchmarks that print a table and a ratio against a baseline measured in
the same run. Each module here has ``main(argv) -> int``."""

from __future__ import annotations

import importlib
import sys

#: benchmark name -> one-line description; the module ``mpjax.cli.bench.<name>`` runs it.
BENCHMARKS: dict[str, str] = {
    "spectra": "spectra kernel and mpjax analyze (ViT-Ti/B/L) vs numpy Gram and SVD loops",
    "prune": "CAST N:M, SparseGPT and the refit on ViT-B/16 block matrices, vs magnitude and Wanda",
    "distill": "masked vs unmasked distillation step",
    "quality": "accuracy of every pruning method, with and without the refit, on the shipped models",
    "runtime": "dense vs 2:4 sparse ViT on the PyTorch runtime (GPU)",
    "dynamics": "cost of the per-epoch spectral recording of the L2 study",
    "checkpoint": "peak memory of mpjax analyze on a sharded bf16 checkpoint (8 GiB)",
    "input": "streamed (grain) vs in-memory input pipeline: decode + augment images/s",
}

__all__ = [
    "BENCHMARKS",
    "main",
]


def main(argv: list[str] | None = None) -> int:
    """``mpjax bench NAME [ARGS ...]``: run one benchmark and print its table."""
    argv = list(sys.argv[2:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: mpjax bench {" + ",".join(BENCHMARKS) + "} [ARGS ...]\n")
        for name, what in BENCHMARKS.items():
            print(f"  {name:<10} {what}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        print(
            f"mpjax bench: unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}.",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(f"mpjax.cli.bench.{name}")
    return int(module.main(rest) or 0)
