"""The named configs of the L2-dynamics study (:data:`CONFIGS`).

The older configs (``small``, ``default``, ``cpu``, ``paper``, ``scaling``, ``noise``) are
kept for their users; the ``*_faithful`` configs follow the papers' protocols and their
``*_faithful_cpu`` twins change only the widths, the training-set size and the epochs
(:data:`CPU_SIZE`). See `docs/method/l2-theory.md`.

References:
  [P25] Berlyand et al., arXiv 2503.01922 (regularisation table, Algorithm 1).
  [P26] Berlyand et al., arXiv 2606.02608, ESM2 (outer-layer scaling, noise injection).
"""

from __future__ import annotations

import dataclasses
import json
import os

from mpjax.dynamics.config import Arm, DynamicsConfig, from_dict, validate


def _arm(name: str, l1: float = 0.0, l2: float = 0.0, mp: bool = False) -> Arm:
    return Arm(name=name, l1=l1, l2=l2, mp=mp)


def comparison_arms(l1: float, l2: float) -> tuple[Arm, ...]:
    """The five arms of the papers' table: none / MP / L1+L2 / MP+L1+L2 / MP+L2."""
    return (
        _arm("none"),
        _arm("MP", mp=True),
        _arm("L1+L2", l1=l1, l2=l2),
        _arm("MP+L1+L2", l1=l1, l2=l2, mp=True),
        _arm("MP+L2", l2=l2, mp=True),
    )


#: The papers' regularisation table (Fashion-MNIST, ReLU, PyTorch-default init, pixels in
#: [0, 1], SGD momentum 0.9, lr 0.01 x 0.96 every 4 epochs, l1 = l2 = 1e-6, Algorithm 1 every 4
#: epochs with horizon 200, split and sparsify); the noise experiment perturbs its MP+L1+L2
#: members. Sizes below change only the widths, ``n_train`` and ``epochs``.
TABLE = DynamicsConfig(
    name="table_faithful",
    experiment="noise",
    widths=(784, 3000, 3000, 3000, 3000, 500, 10),
    activation="relu",
    init_scaling="torch",
    input_scaling="unit",
    optimizer="sgd",
    momentum=0.9,
    lr=0.01,
    lr_decay=0.96,
    lr_decay_every=4,
    batch_size=128,
    epochs=100,
    seeds=(0, 1, 2),
    arms=comparison_arms(l1=1e-6, l2=1e-6),
    prune_every=4,
    prune_horizon=200.0,
    sparsify_theta=0.1,
    split=True,
    noise_layers="non_final",
    noise_eps="std",
    noise_arm="MP+L1+L2",
    noise_levels=tuple(round(0.0005 * i, 6) for i in range(21)),
    noise_draws=2,
)

#: The papers' outer-layer scaling ([784, N, N, 10], inputs of largest norm 0.05, N(0, 1/N)
#: init over the width, SGD + L1, 200 epochs); ``OUTER_N2`` is the N(0, 1/N^2) variant.
OUTER = DynamicsConfig(
    name="outer_faithful",
    experiment="scaling",
    widths=(784, 500, 500, 10),
    activation="relu",
    init_scaling="1/width",
    g=1.0,
    input_scaling="max_norm",
    input_max_norm=0.05,
    optimizer="sgd",
    momentum=0.9,
    lr=0.01,
    lr_decay=0.96,
    lr_decay_every=4,
    batch_size=128,
    epochs=200,
    seeds=(0, 1, 2),
    arms=(Arm("L1", l1=1e-6),),
    scaling_widths=(500, 1000, 2000, 4000, 8000, 16000, 30000),
)
OUTER_N2 = dataclasses.replace(OUTER, name="outer_faithful_n2", init_scaling="1/width^2")

#: CPU sizes of the faithful configs: only widths, training-set size and epochs differ.
CPU_SIZE = {
    "table": {"widths": (784, 64, 64, 64, 64, 11, 10), "n_train": 20000, "epochs": 24},
    "outer": {"scaling_widths": (16, 32, 64), "epochs": 100},
}

CONFIGS: dict[str, DynamicsConfig] = {
    "small": DynamicsConfig(
        name="small",
        widths=(32, 128, 128, 10),
        dataset="teacher",
        n_train=4096,
        n_test=2048,
        teacher_rank=4,
        teacher_hidden=32,
        lr=0.05,
        batch_size=128,
        epochs=30,
        top_k=6,
        arms=(_arm("none"), _arm("L2", l2=1e-2)),
    ),
    "default": DynamicsConfig(
        name="default",
        widths=(784, 512, 512, 10),
        epochs=4,
        lr=0.02,
        arms=(_arm("none"), _arm("L2", l2=1e-3)),
    ),
    "cpu": DynamicsConfig(
        name="cpu",
        widths=(784, 512, 512, 10),
        epochs=6,
        lr=0.02,
        prune_every=2,
        prune_horizon=12.0,
        arms=comparison_arms(l1=1e-5, l2=1e-3),
    ),
    "paper": DynamicsConfig(
        name="paper",
        widths=(784, 3000, 3000, 3000, 3000, 500, 10),
        activation="relu",
        epochs=100,
        lr=0.01,
        prune_every=4,
        prune_horizon=200.0,
        arms=comparison_arms(l1=1e-6, l2=1e-6),
    ),
    "scaling": DynamicsConfig(
        name="scaling",
        experiment="scaling",
        widths=(784, 256, 256, 10),
        epochs=3,
        lr=0.02,
        n_train=20000,
        scaling_widths=(64, 128, 256, 512),
        arms=(_arm("L2", l2=1e-4),),
    ),
    "table_faithful": TABLE,
    "table_faithful_cpu": dataclasses.replace(
        TABLE, name="table_faithful_cpu", **CPU_SIZE["table"]
    ),
    "outer_faithful": OUTER,
    "outer_faithful_cpu": dataclasses.replace(
        OUTER, name="outer_faithful_cpu", **CPU_SIZE["outer"]
    ),
    "outer_faithful_n2": OUTER_N2,
    "outer_faithful_n2_cpu": dataclasses.replace(
        OUTER_N2, name="outer_faithful_n2_cpu", **CPU_SIZE["outer"]
    ),
    "noise": DynamicsConfig(
        name="noise",
        experiment="noise",
        widths=(784, 256, 256, 10),
        epochs=3,
        lr=0.02,
        n_train=20000,
        arms=(_arm("L2", l2=1e-4),),
    ),
}


def load_config(name_or_path: str) -> DynamicsConfig:
    """A named config from :data:`CONFIGS` or a JSON file (keys of :class:`DynamicsConfig`)."""
    if name_or_path in CONFIGS:
        return validate(CONFIGS[name_or_path])
    if os.path.isfile(name_or_path):
        with open(name_or_path) as f:
            return from_dict(json.load(f))
    raise ValueError(
        f"--config {name_or_path!r}: neither a named config {sorted(CONFIGS)} nor a JSON file"
    )
