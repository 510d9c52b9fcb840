"""Build (and optionally execute) notebooks/02_prune_vit.ipynb.

.venv/bin/python notebooks/build_02_prune_vit.py                 # build + execute (full config)
MPJAX_NOTEBOOK_CONFIG=small .venv/bin/python notebooks/build_02_prune_vit.py
.venv/bin/python notebooks/build_02_prune_vit.py --no-execute
"""

from __future__ import annotations

import nbbuild

CELLS = [
    (
        "md",
        """# Pruning a ViT step by step

The pipeline that `mpjax prune` / `mpjax demo` run (`mpjax.pipeline.run`), one step at a time
on the Fashion-MNIST ViT shipped with mpjax (4 blocks, width 64, 17 tokens, 88.74% test
accuracy), with a plot for each step:

1. load the model and the data, evaluate the dense model;
2. fit the Marchenko–Pastur (MP) law to every block matrix (`mpjax.mp.analysis`);
3. turn the spectral edges into SEB layer weights and per-layer budgets (`mpjax.pruning.budgets`);
4. masks: magnitude vs SEB at 50% unstructured; 2:4 magnitude vs CAST with an input-channel
   permutation baked in (`mpjax.pruning.permute_vit`, `mpjax.pruning.cast`);
5. ToMe token counts and MAC accounting (`mpjax.arch.vit_macs`);
6. a short frozen-mask distillation from the dense model (`mpjax.training.distill`);
7. accuracy vs sparsity for the methods side by side;
8. the committed method comparison of `mpjax bench quality` (post-training baselines,
   reconstruction, distillation) on both shipped models.

Every claim the notebook illustrates is asserted. `MPJAX_NOTEBOOK_CONFIG=small` selects the
CI-sized run (2000 test images, 50 distillation steps, three sparsities; < 60 s on 2 cores);
the default `full` uses all 10000 test images, 200 steps and seven sparsities.""",
    ),
    (
        "code",
        """import dataclasses
import json
import os
import tempfile
import time
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto in a kernel
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

import mpjax
from mpjax import arch, data, models, training, tree
from mpjax.models import vit
from mpjax.mp import analysis, plots
from mpjax.pipeline import VIT_BLOCKS, MacSummary, PruneReport, format_table
from mpjax.pruning import budgets, cast, masks, permute_vit, prune, validate_nm

%matplotlib inline
T_START = time.perf_counter()
MODE = os.environ.get("MPJAX_NOTEBOOK_CONFIG", "full")
SMALL = MODE == "small"
N_EVAL = 2000 if SMALL else 10000                  # test images evaluated
DISTILL_STEPS = 50 if SMALL else 200               # frozen-mask distillation steps
SPARSITIES = [0.3, 0.5, 0.7] if SMALL else [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
CALIB_IMAGES = 256                                 # as `mpjax prune` (PruneJob.calib_images)
INCLUDE = VIT_BLOCKS                               # qkv, out, fc1, fc2 of every block


def short(path):
    \"\"\"b0/attn.query, b3/mlp.fc2 ... for plot labels.\"\"\"
    blk = path.split("encoderblock_")[1].split("/")[0]
    name = path.rsplit("/", 2)[-2]
    name = {"Dense_0": "mlp.fc1", "Dense_1": "mlp.fc2"}.get(name, "attn." + name)
    return f"b{blk}/{name}"


print(MODE, "| test images", N_EVAL, "| distill steps", DISTILL_STEPS, "| sparsities", SPARSITIES)""",
    ),
    (
        "md",
        """## 1. Model, data, dense accuracy
`models.load_shipped_model` returns Linen params in the big_vision layout and the `ViTConfig`;
`training.vit_apply_fn(config, tome_r)` is the (cached, so compiled once) apply function that
`training.evaluate` and `training.distill` take.""",
    ),
    (
        "code",
        """params, config, info = models.load_shipped_model()
apply_fn = training.vit_apply_fn(config)
x_train, y_train = data.load_fashion_mnist("train")
x_test, y_test = data.load_fashion_mnist("test")
test = (x_test[:N_EVAL], y_test[:N_EVAL])


def accuracy(p, tome_r=0):
    return training.evaluate(p, training.vit_apply_fn(config, tome_r), *test)


acc_dense = accuracy(params)
views = tree.select(params, include=INCLUDE)
n_weights = sum(v.d_out * v.d_in for v in views.values())
n_params = sum(np.size(x) for x in tree.flatten(params).values())
print(config)
print(f"{n_params} parameters, {len(views)} block matrices with {n_weights} weights")
print(f"train {x_train.shape}, test {x_test.shape}; recorded test accuracy {info['test_accuracy']}")
print(f"dense accuracy on {N_EVAL} test images: {acc_dense:.4f}")
assert acc_dense > 0.85
if not SMALL:
    assert abs(acc_dense - info["test_accuracy"]) < 1e-4   # the recorded number, reproduced""",
    ),
    (
        "md",
        """## 2. MP analysis of the block matrices
Each matrix `W` (view `(d_out, d_in)`) gets a BEMA fit of the MP law to the eigenvalues
`s^2 / d_in`; `sigma_plus` is the bulk edge on the singular-value scale (the edge budgets use);
`n_spikes` counts singular values above the calibrated edge (5% false-spike rate per layer) and
`n_above_edge` those above `sigma_plus`; `bulk_fraction` is the share of the spectrum inside the bulk and `alpha_hill`
the heavy-tail exponent. Training leaves structure (spikes) in every layer type.""",
    ),
    (
        "code",
        """fits = analysis.analyze(params, include=INCLUDE, progress=False)
cols = ["shape", "sigma_plus", "n_spikes", "bulk_fraction", "fit_error", "alpha_hill", "status"]
lines = ["| layer | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
for r in fits.rows:
    cells = [f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols]
    lines.append(f"| {short(r['path'])} | " + " | ".join(cells) + " |")
display(Markdown("\\n".join(lines)))
for line in analysis.summary_lines(fits):
    print(line)
assert len(fits) == 24 and all(r["status"] == "ok" for r in fits.rows)
assert sum(r["n_spikes"] > 0 for r in fits.rows) >= 20            # structure above the bulk
assert all(0 < r["bulk_fraction"] <= 1 for r in fits.rows)""",
    ),
    (
        "md",
        """The empirical spectral density (ESD) with the fitted MP density for the layer with the
most spikes and the one with the fewest (`mpjax.mp.plots.esd_panel`; spikes beyond 1.5x the edge
are counted in the panel, not drawn).""",
    ),
    (
        "code",
        """by_spikes = sorted(fits.rows, key=lambda r: r["n_spikes"])
shown = [by_spikes[-1]["path"], by_spikes[0]["path"]]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for ax, p in zip(axes, shown):
    f = fits.fits[p]
    plots.esd_panel(ax, fits.spectra[p], f, bins=30,
                    title=f"{short(p)} {f.shape[0]}x{f.shape[1]}: {f.n_spikes} spikes, "
                          f"sigma_plus {f.edge:.3f}")
    ax.set_xlabel("eigenvalue s^2 / d_in", fontsize=7)
    ax.title.set_fontsize(9)
plt.tight_layout()
plt.show()
s0 = fits.spectra[shown[0]]
assert np.sum(s0 > fits.fits[shown[0]].edge) == fits.fits[shown[0]].n_spikes""",
    ),
    (
        "md",
        """## 3. SEB: layer weights from the spectral edges
Spectral edge budgeting prunes the globally smallest `|W_ij| / w_l`, with
`w_l = max(0.1, 1 + beta * d(s) * z_l)` and `z_l` the z-score of the layer's `sigma_plus`
(the Hill exponent at `s <= 0.2`), `d(s) = max(0, 1 - s / s_d)`. A layer with a higher edge gets
a larger `w_l` and is pruned harder; the reweighting fades out as `s` approaches `s_d`.
`budgets.budget_of(masks)` reads the per-layer budget a mask realises.""",
    ),
    (
        "code",
        """signals = budgets.layer_signals(params, views)      # the spectral signals, computed once
paths = list(views)
order = np.argsort([signals[p]["edge"] for p in paths])
w = {s: budgets.seb_weights(signals, s) for s in SPARSITIES}
pruned_u, masks_u, reports_u = {}, {}, {}
for method in ("magnitude", "seb"):
    out = prune(params, method, "unstructured", 0.5, include=INCLUDE,
                signals=signals if method == "seb" else None)
    pruned_u[method], masks_u[method], reports_u[method] = out
layer_budgets = {m: tree.flatten(budgets.budget_of(masks_u[m])) for m in masks_u}

fig, axes = plt.subplots(1, 3, figsize=(15, 3.6), gridspec_kw={"width_ratios": [1, 1, 1.4]})
edges = [signals[paths[i]]["edge"] for i in order]
axes[0].bar(range(len(paths)), edges, color="C0")
axes[0].set_ylim(min(edges) * 0.9, max(edges) * 1.02)
axes[0].set_title("sigma_plus per layer (sorted)", fontsize=9)
for s in SPARSITIES:
    axes[1].plot([w[s][paths[i]] for i in order], "o-", ms=3, label=f"s = {s}")
axes[1].axhline(1.0, color="k", lw=0.8, ls=":")
axes[1].set_title("SEB weight w_l (same layer order)", fontsize=9)
axes[1].legend(fontsize=7)
for ax in axes[:2]:
    ax.set_xticks(range(len(paths)), [short(paths[i]) for i in order], rotation=90, fontsize=6)
x = np.arange(len(paths))
axes[2].bar(x - 0.2, [layer_budgets["magnitude"][p] for p in paths], 0.4, label="global magnitude")
axes[2].bar(x + 0.2, [layer_budgets["seb"][p] for p in paths], 0.4, label="SEB")
axes[2].axhline(0.5, color="k", lw=0.8, ls=":")
axes[2].set_xticks(x, [short(p) for p in paths], rotation=90, fontsize=6)
axes[2].set_title("per-layer sparsity at 50% overall", fontsize=9)
axes[2].legend(fontsize=7)
plt.tight_layout()
plt.show()

w5 = reports_u["seb"]["layer_weights"]
print("w_l at s = 0.5:", f"min {min(w5.values()):.3f}, max {max(w5.values()):.3f}")
for s in SPARSITIES:
    print(f"s = {s}: regime {budgets.seb_regime(s)}")
assert w5 == w[0.5]
# at s = 0.5 every layer type has the same beta, so w_l follows sigma_plus exactly
assert np.all(np.diff([w5[paths[i]] for i in order]) >= 0)
# a larger w_l means a harder-pruned layer than under plain global magnitude
shift = np.array([layer_budgets["seb"][p] - layer_budgets["magnitude"][p] for p in paths])
assert np.corrcoef([w5[p] for p in paths], shift)[0, 1] > 0.5""",
    ),
    (
        "md",
        """## 4. Masks
### 50% unstructured: global magnitude vs SEB
Both remove exactly `round(0.5 * N)` of the `N` block weights (ties broken by index), so the
overall sparsity is exact; only the split between layers differs.""",
    ),
    (
        "code",
        """acc = {}
for method in ("magnitude", "seb"):
    summ = reports_u[method]["summary"]
    removed = n_weights - sum(r["kept"] for r in summ["layers"] if r["pruned"])
    acc[method, 0.5] = accuracy(pruned_u[method])
    print(f"{method:>9} 50%: removed {removed} of {n_weights} (sparsity "
          f"{summ['pruned_layers_sparsity']:.6f}), accuracy {acc[method, 0.5]:.4f}")
    assert removed == int(np.floor(0.5 * n_weights + 0.5))
    for path, m in tree.flatten(masks_u[method]).items():
        assert np.all(np.asarray(tree.flatten(pruned_u[method])[path])[~np.asarray(m)] == 0)""",
    ),
    (
        "md",
        """### 2:4: magnitude vs CAST, with a permutation
A 2:4 mask keeps 2 of every 4 consecutive inputs (`d_in`) of each row. Two things help it:

* **permutation** (`permute_vit`): reorder the inputs of `fc2` (and of `out`, within each
  head) so that each group of 4 mixes strong and weak columns, and permute the producing layer's
  outputs (`fc1`, `value`) to match. The dense function is unchanged.
* **CAST** (`method="cast"`): instead of the top-2 `|W|` per group, pick the pattern that
  minimises the calibration cost `r^T C_g r` of the removed part `r`, with `C_g` the 4x4 input
  covariance block from calibration activations (`vit.layer_inputs`, 256 training images,
  4096 rows) plus a small pull towards an unstructured mask (here global magnitude; the demo
  uses SER with a gradient function).

Calibration inputs are captured from the *unpermuted* model for the permutation's column scores
and again from the permuted model for CAST.""",
    ),
    (
        "code",
        """rng = np.random.default_rng(0)                     # PruneJob.seed
calib_idx = rng.choice(len(x_train), CALIB_IMAGES, replace=False)
calib_x = training.prepare_images(x_train[calib_idx])
_, inputs = vit.layer_inputs(config, params, calib_x)
params_p, perms = permute_vit(params, 4, calib_inputs=inputs)
x_chk = training.prepare_images(x_test[:1000])
perm_err = float(np.max(np.abs(np.asarray(apply_fn(params, x_chk)) - np.asarray(apply_fn(params_p, x_chk)))))
print(f"permuted {len(perms)} consumer layers; max |logit change| on 1000 images: {perm_err:.2e}")
assert len(perms) == 8 and perm_err < 1e-5          # 4 x (fc1 -> fc2, value -> out)
_, inputs_p = vit.layer_inputs(config, params_p, calib_x)
covs = cast.covariances({p: inputs_p[p] for p in views}, 4)   # first 4096 rows, as prune()

nm = {}
for name, p0, method in [("magnitude 2:4", params, "magnitude"),
                         ("magnitude 2:4 + perm", params_p, "magnitude"),
                         ("CAST 2:4 + perm", params_p, "cast")]:
    kw = dict(calib_covs=covs) if method == "cast" else {}
    pruned, m, rep = prune(p0, method, "2:4", include=INCLUDE, **kw)
    validate_nm(m, 2, 4)                            # raises on any bad group
    assert rep["summary"]["pruned_layers_sparsity"] == 0.5 and not rep["skipped"]
    nm[name] = dict(params=pruned, masks=m, dense=p0, acc=accuracy(pruned), summary=rep["summary"])
    print(f"{name:>21}: valid 2:4 on {len(views)} layers, accuracy {nm[name]['acc']:.4f}")""",
    ),
    (
        "md",
        """CAST's objective is the calibration cost `sum_g r^T C_g r` of what a mask removes from the
*dense* (permuted) weights. CAST always evaluates the magnitude pattern of every group as well,
so its objective (cost plus the small pull) never exceeds magnitude's; here the cost alone is
lower in every layer. Both costs are computed with `cast.calibration_cost` on the dense
matrices, with the same covariances.""",
    ),
    (
        "code",
        """dense_mats = tree.matrices(params_p, views)
cost = {name: {p: float(cast.calibration_cost(dense_mats[p], tree.to_matrix(m, views[p]), covs[p]))
               for p, m in tree.flatten(nm[name]["masks"]).items()}
        for name in ("magnitude 2:4 + perm", "CAST 2:4 + perm")}
ratio = np.array([cost["CAST 2:4 + perm"][p] / cost["magnitude 2:4 + perm"][p] for p in paths])
# CAST keeps the dense values on its mask (no SER source here)
for p, m in tree.flatten(nm["CAST 2:4 + perm"]["masks"]).items():
    kept = tree.flatten(nm["CAST 2:4 + perm"]["params"])[p]
    assert np.array_equal(np.asarray(kept), np.where(m, tree.flatten(params_p)[p], 0))

fig, axes = plt.subplots(1, 2, figsize=(14, 3.4), gridspec_kw={"width_ratios": [2, 1]})
x = np.arange(len(paths))
axes[0].bar(x - 0.2, [cost["magnitude 2:4 + perm"][p] for p in paths], 0.4, label="magnitude 2:4")
axes[0].bar(x + 0.2, [cost["CAST 2:4 + perm"][p] for p in paths], 0.4, label="CAST 2:4")
axes[0].set_xticks(x, [short(p) for p in paths], rotation=90, fontsize=6)
axes[0].set_title("calibration cost sum_g r^T C_g r per layer (permuted model)", fontsize=9)
axes[0].legend(fontsize=7)
names = list(nm)
axes[1].bar(range(len(names) + 1), [acc_dense] + [nm[n]["acc"] for n in names],
            color=["0.6", "C0", "C1", "C2"])
axes[1].set_xticks(range(len(names) + 1), ["dense"] + names, rotation=20, fontsize=7)
axes[1].set_ylim(0.5, 1.0)
axes[1].set_title(f"accuracy ({N_EVAL} test images)", fontsize=9)
plt.tight_layout()
plt.show()
print(f"CAST / magnitude cost per layer: min {ratio.min():.3f}, median {np.median(ratio):.3f}, "
      f"max {ratio.max():.3f}")
assert np.all(ratio <= 1 + 1e-6)
assert nm["magnitude 2:4 + perm"]["acc"] > nm["magnitude 2:4"]["acc"]    # the permutation helps
assert nm["CAST 2:4 + perm"]["acc"] > nm["magnitude 2:4"]["acc"]""",
    ),
    (
        "md",
        """## 5. ToMe and MAC accounting
Token merging (ToMe) with `r` merges per block shrinks the token count from block to block
(`vit.token_counts`; the class token is never merged). `arch.vit_macs` counts multiply-adds per
image: a linear layer on `T` tokens costs `T d_in d_out` (`k/n` of that with a `k:n` mask), the
attention matmuls `2 T^2 D`. The per-layer counts of `masks.summary` (what `prune` reports, with
the tokens each layer sees) agree with `vit_macs`'s block linear layers.""",
    ),
    (
        "code",
        """cast_params = nm["CAST 2:4 + perm"]["params"]
rows = []
for r in (0, 1, 2):
    counts = vit.token_counts(config, r)
    tokens = {p: counts[int(p.split("encoderblock_")[1].split("/")[0])] for p in views}
    dense_rep = arch.vit_macs(config, tome_r=r)
    sparse_rep = arch.vit_macs(config, dict.fromkeys(("qkv", "proj", "fc1", "fc2"), "2:4"), tome_r=r)
    summ = masks.summary(cast_params, nm["CAST 2:4 + perm"]["masks"], tokens=tokens, views=views)
    block_linear = sum(row.macs for row in sparse_rep.rows if row.layer_type in ("qkv", "proj", "fc1", "fc2"))
    assert summ["macs"] == block_linear            # prune's accounting == vit_macs
    rows.append(dict(r=r, counts=counts, dense=dense_rep.total, sparse=sparse_rep.total,
                     base=dense_rep.dense_total, acc_dense=accuracy(params, r),
                     acc_cast=accuracy(cast_params, r)))
    print(f"ToMe r={r}: tokens per block {counts[:-1]} | MACs dense {dense_rep.total / 1e6:.3f} M, "
          f"2:4 {sparse_rep.total / 1e6:.3f} M ({100 * sparse_rep.reduction:.1f}% fewer than dense r=0) "
          f"| accuracy dense {rows[-1]['acc_dense']:.4f}, CAST 2:4 {rows[-1]['acc_cast']:.4f}")
assert rows[0]["counts"] == [17] * 5 and rows[1]["counts"] == [17, 16, 15, 14, 13]
assert rows[0]["dense"] == rows[0]["base"] and all(a["sparse"] < a["dense"] for a in rows)
assert all(a["sparse"] > b["sparse"] for a, b in zip(rows, rows[1:]))

fig, axes = plt.subplots(1, 3, figsize=(14, 3.2))
for row in rows:
    axes[0].plot(range(config.num_layers), row["counts"][:-1], "o-", label=f"r = {row['r']}")
axes[0].set_xlabel("block"); axes[0].set_ylabel("tokens"); axes[0].legend(fontsize=7)
axes[0].set_title("tokens entering each block", fontsize=9)
xr = np.arange(len(rows))
axes[1].bar(xr - 0.2, [row["dense"] / 1e6 for row in rows], 0.4, label="dense", color="0.6")
axes[1].bar(xr + 0.2, [row["sparse"] / 1e6 for row in rows], 0.4, label="2:4 blocks", color="C2")
axes[1].set_xticks(xr, [f"r = {row['r']}" for row in rows]); axes[1].legend(fontsize=7)
axes[1].set_title("MMAC per image", fontsize=9)
axes[2].plot([row["sparse"] / row["base"] for row in rows], [row["acc_cast"] for row in rows], "o-C2",
             label="CAST 2:4 + perm")
axes[2].plot([row["dense"] / row["base"] for row in rows], [row["acc_dense"] for row in rows], "o-",
             color="0.5", label="dense")
axes[2].set_xlabel("MACs / dense MACs"); axes[2].set_ylabel("accuracy"); axes[2].legend(fontsize=7)
axes[2].set_title("accuracy vs MACs (r = 0, 1, 2 from right)", fontsize=9)
plt.tight_layout()
plt.show()""",
    ),
    (
        "md",
        """## 6. Frozen-mask distillation
A short distillation of the dense (permuted) model into the CAST 2:4 model, with the
settings `training.DISTILL_CONFIGS["fmnist-vit"]` (AdamW, warmup + cosine,
`L = 0.5 CE_ls + 0.5 tau^2 KL`, `tau = 2`); `training.masked_updates` keeps every pruned weight
at exactly zero.""",
    ),
    (
        "code",
        """dcfg = dataclasses.replace(training.DISTILL_CONFIGS["fmnist-vit"], num_steps=DISTILL_STEPS,
                           warmup_steps=max(1, DISTILL_STEPS // 10), log_every=5, progress=False)
workdir = tempfile.mkdtemp(prefix="mpjax_nb02_")
student, dsum = training.distill(cast_params, params_p, nm["CAST 2:4 + perm"]["masks"], apply_fn,
                                 (x_train, y_train), dcfg, workdir)
acc_pruned, acc_distilled = nm["CAST 2:4 + perm"]["acc"], accuracy(student)
log = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
print(f"{dsum['steps']} steps of batch {dcfg.batch_size} in {dsum['seconds']:.1f} s")
report = PruneReport(              # what `mpjax prune` would report for these steps
    source="shipped", method="cast", pattern="2:4", permuted=True, sparsity=0.5,
    global_sparsity=nm["CAST 2:4 + perm"]["summary"]["sparsity"],
    macs=MacSummary(dense_gmac=rows[0]["base"] / 1e9, pruned_gmac=rows[0]["sparse"] / 1e9,
                    reduction=1 - rows[0]["sparse"] / rows[0]["base"]),
    acc_dense=acc_dense, acc_pruned=acc_pruned, acc_distilled=acc_distilled,
)
print(format_table(report))
for path, m in tree.flatten(nm["CAST 2:4 + perm"]["masks"]).items():
    w_ = np.asarray(tree.flatten(student)[path])
    assert np.all(w_[~np.asarray(m)] == 0)                         # pruned weights stay zero
assert acc_distilled >= acc_pruned                                 # distillation recovers

fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
axes[0].plot([r["step"] for r in log], [r["loss"] for r in log], label="loss")
axes[0].plot([r["step"] for r in log], [r["kl"] for r in log], label="KL(teacher || student)")
axes[0].set_xlabel("step"); axes[0].legend(fontsize=7); axes[0].set_title("distillation", fontsize=9)
axes[1].bar(["dense", "CAST 2:4", "+ distill"], [acc_dense, acc_pruned, acc_distilled],
            color=["0.6", "C1", "C2"])
axes[1].set_ylim(0.5, 1.0); axes[1].set_title(f"accuracy ({N_EVAL} test images)", fontsize=9)
plt.tight_layout()
plt.show()""",
    ),
    (
        "md",
        """## 7. Accuracy vs sparsity
Unstructured global magnitude and SEB over a range of sparsities, *without* distillation
(one-shot, so cheap), with the 2:4 points at 50% for reference. The SEB weights come from the
dense spectra computed once (`signals`).""",
    ),
    (
        "code",
        """for s in SPARSITIES:
    for method in ("magnitude", "seb"):
        if (method, s) in acc:
            continue
        p_s, m_s, rep = prune(params, method, "unstructured", s, include=INCLUDE,
                              signals=signals if method == "seb" else None)
        kept = sum(r["kept"] for r in rep["summary"]["layers"] if r["pruned"])
        assert n_weights - kept == int(np.floor(s * n_weights + 0.5))   # exact sparsity
        acc[method, s] = accuracy(p_s)
fig, ax = plt.subplots(figsize=(7, 4.2))
for method, c in (("magnitude", "C0"), ("seb", "C3")):
    ax.plot(SPARSITIES, [acc[method, s] for s in SPARSITIES], "o-", color=c,
            label=f"{method}, unstructured")
for (name, mk, c) in (("magnitude 2:4", "v", "C0"), ("magnitude 2:4 + perm", "^", "C1"),
                      ("CAST 2:4 + perm", "s", "C2")):
    ax.plot([0.5], [nm[name]["acc"]], mk, color=c, ms=8, label=name)
ax.plot([0.5], [acc_distilled], "*", color="C2", ms=14, label=f"CAST 2:4 + perm + {DISTILL_STEPS} steps KD")
ax.axhline(acc_dense, color="k", ls=":", lw=1, label="dense")
ax.set_xlabel("sparsity of the block matrices"); ax.set_ylabel(f"test accuracy ({N_EVAL} images)")
ax.legend(fontsize=7, loc="lower left")
ax.set_title("Fashion-MNIST ViT: one-shot pruning (no distillation) vs sparsity", fontsize=9)
plt.show()
print("sparsity  " + "  ".join(f"{s:>6}" for s in SPARSITIES))
for method in ("magnitude", "seb"):
    print(f"{method:>9} " + "  ".join(f"{acc[method, s]:.4f}" for s in SPARSITIES))
for name in nm:
    print(f"{name}: {nm[name]['acc']:.4f}")
print(f"CAST 2:4 + perm + distillation: {acc_distilled:.4f}   dense: {acc_dense:.4f}")
for method in ("magnitude", "seb"):
    a = [acc[method, s] for s in SPARSITIES]
    assert np.all(np.diff(a) <= 0.01), (method, a)       # accuracy falls with sparsity
    assert a[-1] < a[0] - 0.1
assert acc["magnitude", 0.5] > nm["magnitude 2:4"]["acc"]   # unstructured is the easier target
print(f"notebook ran in {time.perf_counter() - T_START:.1f} s ({MODE} config), mpjax {mpjax.__version__}")""",
    ),
    (
        "md",
        """## 8. The method comparison (`mpjax bench quality`)
The committed rows of `mpjax bench quality` (`notebooks/results/quality_<model>.json`; the
README gives the commands): every method prunes one-shot from the same 256 training images
per calibration seed (N:M rows with the input-channel permutation), then optionally refits
the kept weights to the dense layer outputs (`--reconstruct`), then optionally distills.
Bars are the mean over the calibration seeds, whiskers the spread (min to max); the light
bar of each pair is one-shot, the dark one with the refit. This cell only reads the JSON.""",
    ),
    (
        "code",
        """from mpjax.cli.bench import quality
from mpjax.cli.bench.runtime import results_dir

comparison = {}
for path in sorted(results_dir().glob("quality_*.json")):
    rows_q = json.loads(path.read_text())
    if rows_q and "model" in rows_q[0]:
        comparison[path.name] = rows_q
print({name: len(r) for name, r in comparison.items()})
assert comparison, "no committed comparison rows"
for name, rows_q in comparison.items():
    one_shot = [r for r in rows_q if r["tome"] == 0]
    panels = list(dict.fromkeys((quality.target_label(r), r["steps"]) for r in one_shot))
    methods = [m for m in quality.BASELINES + quality.MP_GUIDED
               if any(r["method"] == m for r in one_shot)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False)
    for ax, (target, steps) in zip(axes[0], panels):
        for i, method in enumerate(methods):
            for mode in ("off", "sequential", "parallel"):
                acc_q = [r["acc_distilled"] for r in one_shot if r["method"] == method
                         and quality.target_label(r) == target and r["steps"] == steps
                         and r["reconstruct"] == mode]
                if not acc_q:
                    continue
                x_q = i + (0.2 if mode != "off" else -0.2)
                ax.bar(x_q, np.mean(acc_q), 0.4, color=f"C{i}", alpha=1.0 if mode != "off" else 0.45)
                ax.errorbar(x_q, np.mean(acc_q), yerr=[[np.mean(acc_q) - min(acc_q)],
                            [max(acc_q) - np.mean(acc_q)]], color="k", lw=1, capsize=2)
        ax.axhline(one_shot[0]["acc_dense"], color="k", ls=":", lw=1)
        ax.set_xticks(range(len(methods)), methods, rotation=60, fontsize=7)
        ax.set_ylim(0.5, 0.92)
        ax.set_title(f"{one_shot[0]['model']}: {target}, {steps} KD steps", fontsize=9)
    axes[0][0].set_ylabel("test accuracy (light: one-shot, dark: + refit)")
    plt.tight_layout()
    plt.show()
    print(quality.table(rows_q))
    print(quality.verdict(rows_q))
    for r in rows_q:   # the refit never raises a layer's mean output error on its inputs
        if r["reconstruct"] != "off":
            assert r["error_after"] < r["error_before"], r
    groups = quality.group_rows(rows_q)
    assert all(len(g) == len({r["seed"] for r in g}) for g in groups.values())  # one row per seed""",
    ),
]


if __name__ == "__main__":
    nbbuild.main(CELLS, "02_prune_vit.ipynb")
