"""The L2 dynamics study: spectra of fully connected nets during L1/L2-regularised training.

Modules: :mod:`~mpjax.dynamics.config` (the run's settings),
:mod:`~mpjax.dynamics.presets` (the named configs),
:mod:`~mpjax.dynamics.data` (Fashion-MNIST or a low-rank teacher),
:mod:`~mpjax.dynamics.trainer` (members trained at once, recorded every epoch),
:mod:`~mpjax.dynamics.record` (what is recorded per layer, MP pruning of Algorithm 1),
:mod:`~mpjax.dynamics.algorithm1` (MP pruning during training: keep, sparsify, split),
:mod:`~mpjax.dynamics.store` (the on-disk run), :mod:`~mpjax.dynamics.experiments` (runs read
back, the scaling and noise experiments), :mod:`~mpjax.dynamics.verdicts` (per-claim verdicts)
and :mod:`~mpjax.dynamics.plots`.
The theory: `docs/method/l2-theory.md`.
"""

from mpjax.dynamics import (
    algorithm1,
    config,
    data,
    experiments,
    plots,
    presets,
    record,
    store,
    trainer,
    verdicts,
)
from mpjax.dynamics.config import (
    Arm,
    DynamicsConfig,
    member_strengths,
    to_dict,
    validate,
)
from mpjax.dynamics.data import (
    StudyData,
    load_study_data,
)
from mpjax.dynamics.experiments import (
    Run,
    arm_table,
    final_overlaps,
    load_params,
    load_run,
    noise_injection,
    run_experiment,
    scaling_metrics,
)
from mpjax.dynamics.plots import (
    plot_bulk_edge,
    plot_energy,
    plot_esd,
    plot_noise,
    plot_scaling,
    plot_spikes,
    save_run_plots,
)
from mpjax.dynamics.presets import CONFIGS, load_config
from mpjax.dynamics.record import (
    decompose,
    layer_paths,
    layer_record,
)
from mpjax.dynamics.store import (
    read_index,
)
from mpjax.dynamics.trainer import (
    evaluate_members,
    init_members,
    study_optimizer,
    train,
)

__all__ = [
    "algorithm1",
    "verdicts",
    "presets",
    "config",
    "data",
    "experiments",
    "plots",
    "record",
    "store",
    "trainer",
    "CONFIGS",
    "Arm",
    "DynamicsConfig",
    "Run",
    "StudyData",
    "arm_table",
    "decompose",
    "evaluate_members",
    "final_overlaps",
    "init_members",
    "layer_paths",
    "layer_record",
    "load_config",
    "load_params",
    "load_run",
    "load_study_data",
    "member_strengths",
    "to_dict",
    "noise_injection",
    "plot_bulk_edge",
    "plot_energy",
    "plot_esd",
    "plot_noise",
    "plot_scaling",
    "plot_spikes",
    "read_index",
    "run_experiment",
    "save_run_plots",
    "scaling_metrics",
    "study_optimizer",
    "train",
    "validate",
]
