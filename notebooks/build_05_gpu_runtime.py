"""Builds notebooks/05_gpu_runtime.ipynb (see nbbuild.py)."""

import nbbuild

cells: list[tuple[str, str]] = []


def md(src: str) -> None:
    cells.append(("md", src))


def code(src: str) -> None:
    cells.append(("code", src))


md("""# 05 · The 2:4 GPU runtime: MAC accounting, export parity, measured speed

This notebook reads what the runtime benchmark produced; it needs no GPU.

1. **MAC accounting** (`docs/method/macs.md`): ViT-B/16 costs 17.564 GMAC dense; with 2:4 on
   qkv/proj/fc1/fc2 and ToMe `r = 8` it costs 7.059 GMAC, 59.81% less. MACs are *work*,
   not time: whether the GPU turns them into speed is what part 3 measures.
2. **Export parity**: a 2:4-pruned Flax ViT exported with `mpjax.export` and rebuilt in
   plain PyTorch (`mpjax.torch_runtime`) gives the Flax logits (fp32, CPU), with and without ToMe.
3. **GPU timings**: dense vs cuSPARSELt 2:4 for ViT-B/16 and ViT-L/16, batch 64/256, fp16/bf16,
   ToMe 0/8, eager and CUDA-graph replay, from `notebooks/results/gpu_runtime_<device>.json`,
   written by `bash scripts/gpu_runtime.sh` on a GPU machine. If no such file is committed the
   notebook says so and plots nothing for part 3: no timing here is ever estimated or made up.""")

code("""%matplotlib inline
import os

import matplotlib.pyplot as plt
import numpy as np

import mpjax
from mpjax.arch import macs
from mpjax.cli.bench import runtime

CONFIG = os.environ.get("MPJAX_NOTEBOOK_CONFIG", "full")
print("config:", CONFIG, "| mpjax", mpjax.__version__)""")

md("""## 1 · MAC accounting

1 MAC = one multiply-add. A Linear at `T` tokens costs `T·d_in·d_out`, a k:n layer `k/n` of that;
the attention matmuls cost `2 N² D` per block; the patch embedding runs on the 196 patches and the
head on the class token. ToMe with `r = 8` runs block `l` at `197 − 8l` tokens.""")

code("""SPARSE = dict.fromkeys(("qkv", "proj", "fc1", "fc2"), "2:4")
dense = macs.vit_macs("vit-b16")
both = macs.vit_macs("vit-b16", SPARSE, tome_r=8)
print(f"ViT-B/16 dense      : {dense.total / 1e9:.3f} GMAC")
print(f"ViT-B/16 2:4 + ToMe8: {both.total / 1e9:.3f} GMAC  ({100 * both.reduction:.2f}% fewer)")
assert round(dense.total / 1e9, 3) == 17.564
assert round(both.total / 1e9, 3) == 7.059 and round(100 * both.reduction, 2) == 59.81""")

code("""variants = {
    "dense": ({}, 0),
    "ToMe r=8": ({}, 8),
    "2:4": (SPARSE, 0),
    "2:4 + ToMe": (SPARSE, 8),
    "12:16 + ToMe": (dict.fromkeys(SPARSE, "12:16"), 8),
}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for ax, arch in zip(axes, ("vit-b16", "vit-l16")):
    g = [macs.vit_macs(arch, p, tome_r=r).total / 1e9 for p, r in variants.values()]
    bars = ax.bar(list(variants), g, color=["0.5", "C0", "C1", "C3", "C2"])
    ax.bar_label(bars, fmt="%.2f")
    ax.set_title(f"{arch}: GMAC per image (224 px)")
    ax.set_ylabel("GMAC")
    ax.tick_params(axis="x", rotation=20)
    assert g[3] < g[1] < g[0] and g[3] < g[2] < g[0]
fig.tight_layout()
plt.show()""")

code("""# Where the work goes, block by block (ViT-B/16, 2:4 + ToMe r=8).
rows = [r for r in both.rows if r.name.startswith("blocks.")]
kinds = ["qkv", "attention", "proj", "fc1", "fc2"]
per_block = np.array([[sum(r.macs for r in rows if r.name.startswith(f"blocks.{i}.")
                           and r.layer_type == k) for k in kinds] for i in range(12)]) / 1e6
fig, ax = plt.subplots(figsize=(8, 3.5))
bottom = np.zeros(12)
for j, k in enumerate(kinds):
    ax.bar(range(12), per_block[:, j], bottom=bottom, label=k)
    bottom += per_block[:, j]
ax.set_xlabel("block l (runs at 197 - 8 l tokens)")
ax.set_ylabel("MMAC")
ax.set_title("ViT-B/16, 2:4 + ToMe r=8: MACs per block")
ax.legend(ncol=5, fontsize=8)
fig.tight_layout()
plt.show()
assert np.all(np.diff(bottom) < 0)  # every block is cheaper than the one before""")

md("""## 2 · Export → PyTorch parity (fp32, CPU)

A small ViT is 2:4-pruned by magnitude on every block Linear, exported (timm names, masks,
manifest with sha256 hashes), loaded and validated by the torch runtime, and its logits are
compared with the Flax model's, ToMe off and on. The full config also checks ViT-Ti/16 at 224 px
with ToMe `r = 8`.""")

code("""parity = runtime.flax_parity(tome_rs=(0, 2))
print(parity)
assert parity["max_abs_diff"] < 1e-4""")

code("""if CONFIG == "full":
    import tempfile

    import torch

    from mpjax import export, tree
    from mpjax.pruning import apply_masks, nm_masks
    from mpjax.models import random_init, vit
    from mpjax.torch_runtime import build_model

    cfg = vit.config_for("ti16")
    params = random_init(cfg, seed=0)
    m = nm_masks(params, 2, 4, views=tree.select(params, include=["*encoderblock_*/*/kernel"]))
    x = np.random.default_rng(0).normal(size=(2, 224, 224, 3)).astype(np.float32)
    ref = np.asarray(vit.ViT(cfg).apply({"params": apply_masks(params, m)}, x, tome_r=8))
    with tempfile.TemporaryDirectory() as tmp:
        man = export.export_vit(params, cfg, tmp, masks=m, tome_r=8)
        with torch.no_grad():
            out = build_model(tmp)(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    diff = float(np.abs(out - ref).max())
    print(f"ViT-Ti/16, 2:4 + ToMe 8: max |torch - flax| = {diff:.2e}; "
          f"{sum(r['execution'] == 'sparse' for r in man['layers'])} layers marked sparse")
    assert diff < 1e-4""")

md("""## 3 · GPU timings

Dense and sparse run in one process, same precision, same graph (ToMe on both or neither);
medians of ≥ 50 CUDA-event timings after warm-up. The timing models hold random weights with
2:4 magnitude masks (speed does not depend on the values); correctness of the export path is
part 2, and each row also records the sparse-vs-dense logit difference.""")

code("""results = runtime.load_results()
print(f"results directory: {runtime.results_dir()}")
if not results:
    print("No GPU results are committed yet: the GPU run is pending.\\n"
          "Run `bash scripts/gpu_runtime.sh` on a CUDA machine (< 5 min on an H100/H200) and commit\\n"
          "notebooks/results/gpu_runtime_<device>.json; this section then plots it.")
for res in results:
    print(f"{res['file']}: {res['device']} | torch {res['versions'].get('torch')} | "
          f"cuSPARSELt {res['versions'].get('cusparselt')} | parity {res.get('parity_max_abs_diff')}")
    for key in ("device", "versions", "rows"):
        assert key in res, f"{res['file']} lacks {key}"
    timed = [r for r in res["rows"] if "speedup" in r]
    other = [r for r in res["rows"] if "speedup" not in r]
    print(f"  {len(timed)} timed rows; {len(other)} skipped or failed:",
          sorted({r.get("skipped") or r.get("error", "")[:80] for r in other}))
    assert all(np.isclose(r["speedup"], r["sparse_img_s"] / r["dense_img_s"]) for r in timed)""")

code("""for res in results:
    timed = [r for r in res["rows"] if "speedup" in r]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, mode in zip(axes, ("eager", "graph")):
        sel = [r for r in timed if r.get("mode", "eager") == mode]
        labels = [f"{r['arch'][4:]} b{r['batch']} {r['dtype']} t{r['tome']}" for r in sel]
        ax.bar(range(len(sel)), [r["speedup"] for r in sel],
               color=["C0" if r["dtype"] == "fp16" else "C1" for r in sel])
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(range(len(sel)), labels, rotation=70, fontsize=7)
        ax.set_title(f"{res['device']}: sparse / dense throughput ({mode})")
    axes[0].set_ylabel("speedup (x)")
    fig.tight_layout()
    plt.show()
    gemm = [g for g in res.get("gemm", []) if "speedup" in g]
    if gemm:
        fig, ax = plt.subplots(figsize=(8, 3.5))
        labels = [f"{g['arch'][4:]} {g['dtype']} {g['layer']}" for g in gemm]
        ax.bar(range(len(gemm)), [g["speedup"] for g in gemm])
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(range(len(gemm)), labels, rotation=70, fontsize=7)
        ax.set_ylabel("dense ms / cuSPARSELt ms")
        ax.set_title("per-layer GEMM (block 0 shapes)")
        fig.tight_layout()
        plt.show()""")

md("""**Reading the numbers.** On Hopper, earlier measurements (`docs/method/runtime.md`) found the
`to_sparse_semi_structured` wrapper slower than dense on ViT-size layers, and the direct
`_cslt_sparse_mm` path at 0.85–1.01× depending on shape and graph capture. A 59.81% cut in MACs
is therefore an upper bound on the benefit, not a throughput prediction; only the committed JSON
files above say what a given GPU did.""")

if __name__ == "__main__":
    nbbuild.main(cells, "05_gpu_runtime.ipynb")
