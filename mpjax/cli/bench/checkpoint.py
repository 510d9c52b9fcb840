"""``mpjax bench checkpoint``: peak memory of ``mpjax analyze`` on a checkpoint larger than RAM.

Writes a synthetic sharded safetensors checkpoint (Hugging Face layout: one shard per block
and a ``model.safetensors.index.json``) into a temporary folder it deletes afterwards, then
measures the peak resident memory (``ru_maxrss`` of a child process, by ``os.wait4``) of

* ``imports``: a process that only imports what ``mpjax analyze`` imports (the floor);
* ``analyze``: ``mpjax analyze DIR --out OUT --no-plots`` (leaves read a group at a time);
* ``whole load``: ``mpjax.models.load_source(DIR)``, every leaf in memory as float32. It is
  measured when its estimate (imports + 4 bytes per value) fits in half the available
  memory, and otherwise only estimated (the table says which).

The checkpoint is ``--blocks`` blocks of a ``--width``-wide transformer stored per attention
head (``q``, ``k``, ``v``: ``head_dim x width``; ``o``: ``width x head_dim``), in bfloat16:
the defaults (64 blocks, width 4096, head_dim 128) make 8 GiB in 8192 matrices.

    python -m mpjax bench checkpoint --blocks 64 --dir /tmp
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import ml_dtypes
import numpy as np

from mpjax.cli.bench import measure

HEADER = "{:<12} {:>12} {:>10}  {}"


def build_parser() -> argparse.ArgumentParser:
    """The ``mpjax bench checkpoint`` argument parser."""
    ap = argparse.ArgumentParser(prog="mpjax bench checkpoint", description=__doc__.split("\n")[0])
    ap.add_argument("--blocks", type=int, default=64, help="transformer blocks (one shard each)")
    ap.add_argument("--width", type=int, default=4096, help="model width")
    ap.add_argument("--head-dim", type=int, default=128, help="rows of a per-head projection")
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where the temporary folder goes")
    ap.add_argument("--max-rss-gb", type=float, default=2.0, help="allowed analyze peak (GB)")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    return ap


def checkpoint_bytes(blocks: int, width: int, head_dim: int) -> int:
    """Stored bytes: ``blocks * heads * 4`` bfloat16 matrices of ``head_dim x width``."""
    return blocks * (width // head_dim) * 4 * head_dim * width * 2


def write_checkpoint(folder: Path, blocks: int, width: int, head_dim: int) -> int:
    """Write the shards and the index; returns the number of matrices.

    One block of N(0, 1/width) matrices is drawn; block ``b`` stores it scaled by
    ``1 + b / blocks`` (drawing every value would dominate the benchmark's time).
    """
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    heads = width // head_dim
    base = {}
    for h in range(heads):
        for name in ("q", "k", "v", "o"):
            shape = (width, head_dim) if name == "o" else (head_dim, width)
            base[f"heads.{h}.{name}_proj.weight"] = rng.standard_normal(shape, np.float32)
    scale = np.float32(1.0 / np.sqrt(width))
    weight_map = {}
    for b in range(blocks):
        shard = f"model-{b + 1:05d}-of-{blocks:05d}.safetensors"
        factor = scale * np.float32(1.0 + b / blocks)
        tensors = {
            f"model.layers.{b}.self_attn.{k}": (v * factor).astype(ml_dtypes.bfloat16)
            for k, v in base.items()
        }
        save_file(tensors, str(folder / shard))
        weight_map.update(dict.fromkeys(tensors, shard))
    index = {"metadata": {"total_size": checkpoint_bytes(blocks, width, head_dim)},
             "weight_map": weight_map}  # fmt: skip
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return len(weight_map)


def peak_rss(argv: list[str]) -> tuple[float, float, int]:
    """``(peak RSS in GB, seconds, exit status)`` of ``argv`` run in a child process
    (:func:`mpjax.cli.bench.measure.run`: the peak of its whole process tree)."""
    m = measure.run(argv)
    if m.rc:
        print(f"  {' '.join(argv[1:4])} failed: {m.stderr.strip().splitlines()[-1:]}",
              file=sys.stderr)  # fmt: skip
    return m.peak_rss / 1e9, m.seconds, m.rc


def _available_bytes() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _check(args: argparse.Namespace, need: int) -> None:
    if args.blocks < 1 or args.head_dim < 1 or args.width % args.head_dim:
        raise ValueError(
            f"--blocks {args.blocks} --width {args.width} --head-dim "
            f"{args.head_dim}: need blocks >= 1 and head_dim dividing width."
        )
    free = shutil.disk_usage(args.dir).free
    if free < need + (1 << 30):
        raise ValueError(
            f"--dir {args.dir}: {free / 1e9:.1f} GB free, the checkpoint needs "
            f"{need / 1e9:.1f} GB + 1 GB; pass a --dir with room or fewer --blocks."
        )


def _measure(folder: Path, out: Path, stored: int) -> list[dict]:
    py = sys.executable
    imports = "import mpjax.models.lazy_sources, mpjax.mp.analysis, mpjax.cli.analyze"
    rows = []
    gb, s, rc = peak_rss([py, "-c", imports])
    rows.append({"what": "imports", "peak_gb": gb, "seconds": s, "how": "measured", "rc": rc})
    cmd = [py, "-m", "mpjax", "analyze", str(folder), "--out", str(out), "--no-plots"]
    gb, s, rc = peak_rss(cmd)
    rows.append({"what": "analyze", "peak_gb": gb, "seconds": s, "how": "measured", "rc": rc})
    estimate = rows[0]["peak_gb"] + 2 * stored / 1e9  # bfloat16 -> float32: 4 bytes a value
    if estimate * 1e9 < _available_bytes() / 2:
        load = f"from mpjax.models import load_source; load_source({str(folder)!r})"
        gb, s, rc = peak_rss([py, "-c", load])
        rows.append({"what": "whole load", "peak_gb": gb, "seconds": s, "how": "measured",
                     "rc": rc})  # fmt: skip
    else:
        rows.append({"what": "whole load", "peak_gb": estimate, "seconds": None,
                     "how": "estimated: imports + 4 bytes per value (exceeds half of RAM)",
                     "rc": 0})  # fmt: skip
    return rows


def _print_table(rows: list[dict], layers: int) -> tuple[dict, dict]:
    """Print the rows and the ratio; returns the ``analyze`` and ``whole load`` rows."""
    print(HEADER.format("process", "peak RSS GB", "seconds", "how"))
    for r in rows:
        secs = "-" if r["seconds"] is None else f"{r['seconds']:.0f}"
        print(HEADER.format(r["what"], f"{r['peak_gb']:.2f}", secs, r["how"]))
    analyze, whole = rows[1], rows[2]
    ratio = whole["peak_gb"] / analyze["peak_gb"]
    print(f"analyze read {layers} layers; whole load / analyze peak: {ratio:.1f}x")
    return analyze, whole


def main(argv: list[str] | None = None) -> int:
    """Print the table and the whole-load / analyze peak ratio; 1 if analyze fails its bound."""
    args = build_parser().parse_args(argv)
    stored = checkpoint_bytes(args.blocks, args.width, args.head_dim)
    _check(args, stored)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="mpjax-bench-ckpt-") as tmp:
        folder, out = Path(tmp) / "ckpt", Path(tmp) / "report"
        folder.mkdir()
        t0 = time.perf_counter()
        n = write_checkpoint(folder, args.blocks, args.width, args.head_dim)
        print(
            f"wrote {n} bfloat16 matrices, {stored / 2**30:.2f} GiB in {args.blocks} shards "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        rows = _measure(folder, out, stored)
        layers = (
            len(json.loads((out / "analysis.json").read_text())["layers"])
            if (out / "analysis.json").exists()
            else 0
        )
    analyze, _ = _print_table(rows, layers)
    if args.json:
        Path(args.json).write_text(json.dumps({"stored_bytes": stored, "rows": rows}, indent=1))
    ok = analyze["rc"] == 0 and layers == n and analyze["peak_gb"] < args.max_rss_gb
    return 0 if ok else 1
