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
`MPJAX_NOTEBOOK_CONFIG=small` selects the CI-sized run (< 90 s on 2 cores).""",
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
# ... their subspace settles (overlap with the final one > 0.9 over the last third) ...
assert np.all(ou[-(len(run.epochs) // 3):, l2_member] > 0.9)
# ... and with the bulk gone the inverse-BBP estimate equals the observed spike
sh = lay["sigma_hat"][-1, l2_member, :4]
assert np.allclose(sh, lay["top_s"][-1, l2_member, :4], rtol=0.01)
print("all claims hold")""",
    ),
]


if __name__ == "__main__":
    nbbuild.main(CELLS, "04_l2_dynamics.ipynb")
