"""Build (and optionally execute) notebooks/04_l2_dynamics.ipynb.

.venv/bin/python notebooks/build_04_l2_dynamics.py            # build + execute (full)
MPJAX_NOTEBOOK_CONFIG=small .venv/bin/python notebooks/build_04_l2_dynamics.py
.venv/bin/python notebooks/build_04_l2_dynamics.py --no-execute
"""

from __future__ import annotations

import nbbuild

CELLS = [
    (
        "md",
        """# L2-regularised training dynamics: bulk collapse and spike stabilisation

Theory (`docs/method/l2-theory.md`; [P25] Berlyand et al., arXiv 2503.01922, §5): write a
hidden layer as `W = S + R`, a signal `S` plus a random-like part `R` with iid entries of variance `g/N`. Removing `R` lowers the L2-regularised loss, and at
a stationary point of `CE + l2 ||W||_F^2` the random part vanishes: `||R||_F -> 0`, `g* N -> 0`,
so the Marchenko-Pastur bulk edge collapses towards 0 while the spikes (the singular values of
`S`, seen through the inverse BBP map `sigma_hat = (s + sqrt(s^2 - 4 g*))/2`) and their
singular subspaces stabilise. Without L2 the bulk stays where the initialisation put it.

We train the same fully connected net with and without L2 on a synthetic rank-4 teacher (the
two arms are `vmap`-ed members of one run) and look at what `mpjax.dynamics.trainer` recorded every
epoch: spectra, BEMA fits, bulk energy, `g* N`, top singular values and subspace overlaps.
`MPJAX_NOTEBOOK_CONFIG=small` selects the CI-sized run (< 90 s on 2 cores).

The second part reads the committed results of the papers' three experiments run with their
protocols at CPU size (`notebooks/results/l2_*_faithful_cpu.json`) and states, per claim,
whether this size supports it, contradicts it or leaves it undecided.""",
    ),
    (
        "code",
        """import dataclasses
import os
import tempfile
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm in a bare kernel

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import mpjax
from mpjax.dynamics import (
    CONFIGS,
    arm_table,
    final_overlaps,
    load_run,
    plot_bulk_edge,
    plot_energy,
    plot_esd,
    plot_spikes,
    train,
)

%matplotlib inline
MODE = os.environ.get("MPJAX_NOTEBOOK_CONFIG", "full")
config = CONFIGS["small"]
if MODE != "small":
    config = dataclasses.replace(config, name="small-long", epochs=60, n_train=8192)
print(MODE, config.widths, "epochs", config.epochs, [(a.name, a.l2) for a in config.arms])""",
    ),
    (
        "code",
        """out = tempfile.mkdtemp(prefix="mpjax_dyn_")
train(config, out, progress=False)
run = load_run(out)
for row in arm_table(run):
    print(f"{row['arm']:>5}: test acc {row['test_acc_mean']:.3f}, test CE {row['test_ce']:.3f}")""",
    ),
    (
        "md",
        """## The bulk edge collapses with L2 and stays put without it
`sigma_plus` is the BEMA estimate of the MP bulk edge on the singular-value scale.""",
    ),
    (
        "code",
        """fig = plot_bulk_edge(run)
plt.show()""",
    ),
    (
        "md",
        """## Spectra with the fitted MP density (hidden layer 128 x 128)
Left to right: initialisation, mid-training, end. Top row without L2, bottom row with L2:
the L2 bulk shrinks towards 0 and leaves a few isolated spikes.""",
    ),
    (
        "code",
        """path = "Dense_1/kernel"
for m in range(len(config.members)):
    fig = plot_esd(run, path, member=m)
    plt.show()""",
    ),
    (
        "md",
        """## Random-component energy `||R||_F` and `g* N` fall with L2
`||R||_F^2` is estimated by the bulk energy `sum_{s_i <= sigma_plus} s_i^2`; `g* N = d_out d_in v*`
with `v*` the fitted per-entry bulk variance (log scale).""",
    ),
    (
        "code",
        """fig = plot_energy(run)
plt.show()""",
    ),
    (
        "md",
        """## Spikes stabilise, and so do their singular subspaces
Solid: the top singular values of the L2 member; dashed: inverse-BBP estimates of the signal
behind them (they meet once the bulk is gone). Right: overlap `||U_k^T U_k(final)||_F^2 / k` of
the top-4 left singular subspace (the teacher has rank 4) with the final one.""",
    ),
    (
        "code",
        """l2_member = [i for i, (a, _) in enumerate(config.members) if a.l2 > 0][0]
none_member = [i for i, (a, _) in enumerate(config.members) if a.l2 == 0][0]
fig = plot_spikes(run, path, member=l2_member, k=4)
plt.show()
ou, ov = final_overlaps(run, path, k=4)
fig, ax = plt.subplots(figsize=(5, 3.2))
for m, name in enumerate(run.member_names):
    ax.plot(run.epochs, ou[:, m], marker=".", label=name)
ax.set_xlabel("epoch"); ax.set_ylabel("top-4 overlap with final"); ax.legend()
plt.show()""",
    ),
    ("md", """## The claims, checked on this run"""),
    (
        "code",
        """lay = run.layers[path]
edge_none, edge_l2 = lay["sigma_plus"][-1, none_member], lay["sigma_plus"][-1, l2_member]
print(f"final bulk edge: none {edge_none:.3f}, L2 {edge_l2:.4f} (init {lay['sigma_plus'][0, 0]:.3f})")
# 1. the bulk edge with L2 ends well below the one without L2
assert edge_l2 < 0.1 * edge_none
# ... while without L2 the bulk stays near its initial edge
assert lay["sigma_plus"][-1, none_member] > 0.7 * lay["sigma_plus"][0, none_member]

# 2. random-component energy falls (bulk energy and g*N), only with L2
E = lay["bulk_energy"]
print("bulk energy: start", E[0].round(2), "end", E[-1].round(4))
assert E[-1, l2_member] < 0.01 * E[0, l2_member]
assert E[-1, none_member] > 0.5 * E[0, none_member]
assert lay["gN"][-1, l2_member] < 0.01 * lay["gN"][0, l2_member]

# 3. the top spikes stabilise: the top-4 singular values move < 5% over the last third
last = lay["top_s"][-(len(run.epochs) // 3):, l2_member, :4]
drift = (last.max(0) - last.min(0)) / last.mean(0)
print("relative drift of the top-4 spikes over the last third:", drift.round(3))
assert np.all(drift < 0.05)
# ... and their subspace settles (overlap with the final one > 0.9 over the last third)
assert np.all(ou[-(len(run.epochs) // 3):, l2_member] > 0.9)

# 4. inverse BBP while the bulk is still there: at the first epoch after init, does
# sigma_hat = inverse-BBP(s) predict the final spike better than the raw s does? (At the end
# g* ~ 0, so sigma_hat = s there by construction: comparing them then would test nothing.)
e = 1
s_e, sh_e = lay["top_s"][e, l2_member, :4], lay["sigma_hat"][e, l2_member, :4]
final = lay["top_s"][-1, l2_member, :4]
print(f"epoch {e}: g*N = {lay['gN'][e, l2_member]:.1f} (end {lay['gN'][-1, l2_member]:.4f})")
print("  |s(e) - s(end)|       :", np.abs(s_e - final).round(3))
print("  |sigma_hat(e) - s(end)|:", np.abs(sh_e - final).round(3))
closer = np.nanmean(np.abs(sh_e - final)) < np.nanmean(np.abs(s_e - final))
print("inverse BBP closer to the limit than the raw spikes:", bool(closer))
print("claims 1-3 hold")""",
    ),
]

CELLS += [
    (
        "md",
        """## The papers' experiments, with their protocols, at CPU size

Three experiments of [P25]/[P26] (`docs/method/l2-theory.md`), each run with the papers'
input scaling, initialisation, optimiser, regulariser, schedule and measured quantity; the
CPU size changes only the widths, the number of training images and the number of epochs
(3 seeds each, a shared 2-core machine). The papers' size is one command each:
`mpjax dynamics --config table_faithful|outer_faithful|outer_faithful_n2 --out DIR`.
Verdicts come from `mpjax.dynamics.verdicts`: arm differences count beyond 2 standard errors
over seeds, and claims about trained nets stay *undecided* when the nets did not reach 70%
test accuracy.""",
    ),
    (
        "code",
        """import json

from mpjax.cli.bench.runtime import results_dir
from mpjax.dynamics import plot_noise, plot_scaling
from mpjax.dynamics.verdicts import format_verdicts

docs = {}
for name in ("table", "scaling", "scaling_n2"):
    path = results_dir() / f"l2_{name}_faithful_cpu.json"
    docs[name] = json.loads(path.read_text()) if path.exists() else None
    print(f"{path.name}: {'found' if docs[name] else 'missing'}")""",
    ),
    ("md", """### 1. Regularisation table (6-layer ReLU net, PyTorch-default init)"""),
    (
        "code",
        """doc = docs["table"]
if doc:
    c = doc["config"]
    print("command:", doc["command"])
    print(f"widths {c['widths']}, n_train {c['n_train']}, epochs {c['epochs']}, seeds {c['seeds']}")
    print(f"{'arm':>9} {'test acc % (mean +- sd)':>24} {'per seed':>24} {'papers':>7}")
    paper = {"none": 71.64, "MP": 81.22, "L1+L2": 81.70, "MP+L1+L2": 90.53, "MP+L2": 90.16}
    for a in doc["result"]["arms"]:
        seeds = " ".join(f"{100 * x:.2f}" for x in a["test_acc"])
        print(f"{a['arm']:>9} {100 * a['test_acc_mean']:>15.2f} +- {100 * a['test_acc_std']:.2f}"
              f" {seeds:>24} {paper[a['arm']]:>7}")
    print(format_verdicts([v for v in doc["verdicts"] if "beats" in v["claim"]]))""",
    ),
    ("md", """### 2. Outer-layer scaling: tau_diag at the max-norm input, init beside trained"""),
    (
        "code",
        """for name in ("scaling", "scaling_n2"):
    doc = docs[name]
    if not doc:
        continue
    c = doc["config"]
    print(f"{c['name']}: init {c['init_scaling']}, epochs {c['epochs']}, "
          f"max input norm {doc['result']['rows'][0]['max_input_norm']:.3f}")
    print(f"{'N':>5} {'tau_diag init':>14} {'tau_diag trained':>17} {'a_th':>8} {'a_emp':>8} {'test acc':>9}")
    for r in doc["result"]["rows"]:
        print(f"{r['N']:>5} {r['tau_diag_init']:>14.4g} {r['tau_diag']:>17.4g} {r['a_th']:>8.3g} "
              f"{r['a_emp']:>8.3g} {r['test_acc']:>9.4f}")
    print(format_verdicts(doc["verdicts"]))
    fig = plot_scaling(doc["result"]["rows"])
    fig.axes[0].set_title(c["name"], fontsize=9)
    plt.show()""",
    ),
    ("md", """### 3. Noise injection on the MP+L1+L2 members (every non-final layer; eps a std)"""),
    (
        "code",
        """doc = docs["table"]
if doc:
    rows = doc["result"]["noise"]
    print(f"{'eps (std)':>9} {'train acc':>9} {'test acc':>9} {'test CE':>8} {'J_l2':>8}")
    for r in rows[::2]:
        print(f"{r['eps']:>9.4f} {r['train_acc']:>9.4f} {r['test_acc']:>9.4f} "
              f"{r['test_ce']:>8.4f} {r['J_l2']:>8.4f}")
    print(format_verdicts([v for v in doc["verdicts"] if "beats" not in v["claim"]]))
    fig = plot_noise(rows)
    plt.show()""",
    ),
]

if __name__ == "__main__":
    nbbuild.main(CELLS, "04_l2_dynamics.ipynb")
