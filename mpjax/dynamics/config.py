"""Configuration of the L2-dynamics study: one frozen dataclass, named configs, validation.

A run trains one fully connected architecture for several *members* at once: every member is
one (arm, seed) pair, where an arm fixes the regularisation (``l1``, ``l2``) and whether MP
pruning (Algorithm 1 of [P25], see `docs/method/l2-theory.md`) runs during training. All members share shapes, so the
whole train step is ``vmap``-ed over them (seeds and regularisation sweeps are batched).
Width sweeps change shapes and run one width after the other (``experiment="scaling"``).

Named configs (``CONFIGS`` and ``load_config`` in :mod:`mpjax.dynamics.presets`):

* ``"small"``: the notebook config, a rank-4 synthetic teacher, strong L2 vs none (< 90 s).
* ``"default"``: one Fashion-MNIST run ``[784, 512, 512, 10]`` with L2 and without (CPU).
* ``"cpu"``: the regularisation comparison none / MP / L1+L2 / MP+L1+L2 / MP+L2 at CPU width.
* ``"paper"``: the same comparison at the papers' width ``[784, 3000 x4, 500, 10]``, 100 epochs.
* ``"scaling"``: outer-layer scaling ``[784, N, N, 10]`` over ``N`` (a_N(s) and tau vs N).
* ``"noise"``: noise injection eps = c / N into the middle layer of a trained net.

References:
  [P25] Berlyand et al., arXiv 2503.01922, Algorithm 1 and §5 (L2 training dynamics).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

ACTIVATIONS = ("abs", "relu")
INITS = ("1/N", "1/N^2", "1/width", "1/width^2", "torch")
INPUT_SCALINGS = ("standard", "unit", "max_norm")
NOISE_LAYERS = ("middle", "non_final")
NOISE_EPS = ("variance_c_over_N", "std")
DATASETS = ("fashion_mnist", "teacher")
OPTIMIZERS = ("sgd", "adam")
EXPERIMENTS = ("train", "scaling", "noise")


@dataclasses.dataclass(frozen=True)
class Arm:
    """One regularisation setting of a comparison.

    Attributes:
      name: label in tables and plots (``"none"``, ``"MP+L2"`` ...).
      l1: strength of ``l1 * sum_l ||W_l||_1`` in the loss (kernels only, never biases).
      l2: strength of ``l2 * sum_l ||W_l||_F^2`` in the loss (a loss term, not decoupled decay).
      mp: whether Algorithm 1 MP pruning runs every ``prune_every`` epochs.
    """

    name: str
    l1: float = 0.0
    l2: float = 0.0
    mp: bool = False


@dataclasses.dataclass(frozen=True)
class DynamicsConfig:
    """Everything a dynamics run needs; JSON round-trips through :func:`to_dict`/:func:`from_dict`.

    Attributes:
      name: label of the run.
      widths: layer widths ``[d_0, ..., d_L]``; ``d_0`` must match the data, ``d_L`` the classes.
      activation: ``"abs"`` (the papers' |.|) or ``"relu"``; the last layer is linear.
      init_scaling: kernel variance ``g / N`` (``"1/N"``) or ``g / N^2`` (``"1/N^2"``),
        ``N`` the fan-in ``d_in`` (as :class:`mpjax.models.mlp.MLP`); ``"1/width"`` /
        ``"1/width^2"``: variance ``g / N`` / ``g / N^2`` for every layer with ``N =
        widths[1]`` the hidden width (the papers' scaling experiment); ``"torch"``: kernels and
        biases ``U(-1/sqrt(d_in), 1/sqrt(d_in))``, PyTorch's ``nn.Linear`` default (``g``
        unused).
      g: the variance scale of the initialisation.
      input_scaling: ``"standard"`` (pixels standardised by the training mean/std),
        ``"unit"`` (pixels ``x / 255`` in [0, 1], torchvision's ``ToTensor``) or
        ``"max_norm"`` (pixels in [0, 1] times one factor so that the largest l2 norm of an
        input in the train and test sets used is ``input_max_norm``).
      input_max_norm: the largest input norm under ``"max_norm"`` (0.05 in the papers).
      use_bias: add biases (initialised at 0, never regularised nor pruned).
      dataset: ``"fashion_mnist"`` or ``"teacher"`` (a synthetic low-rank teacher net).
      n_train: use the first ``n_train`` training samples (``None``: all).
      n_test: use the first ``n_test`` test samples (``None``: all).
      teacher_rank: rank of the teacher's first layer (synthetic data only).
      teacher_hidden: width of the teacher's hidden layer (synthetic data only).
      optimizer: ``"sgd"`` (momentum ``momentum``) or ``"adam"``.
      momentum: SGD momentum (0.9 in the papers).
      lr: initial learning rate; multiplied by ``lr_decay`` every ``lr_decay_every`` epochs.
      lr_decay: staircase decay factor (0.96 in the papers).
      lr_decay_every: epochs between decays (4 in the papers).
      batch_size: minibatch size; the last incomplete batch of an epoch is dropped.
      epochs: number of training epochs (epoch 0 is the initialisation, recorded too).
      seeds: one member per (arm, seed); the seed fixes init and data order.
      arms: the regularisation settings compared (members = arms x seeds).
      prune_every: MP pruning period ``l`` in epochs (arms with ``mp=True``).
      prune_horizon: ``f(epoch) = max(0, 1 - epoch / prune_horizon)`` of the bulk is kept (200).
      fit_error_max: prune a layer only when its MP fit error is below this ("gamma_fit").
      sparsify_theta: Algorithm 1's singular-vector sparsification: entries of a kept bulk
        vector ``u_k``, ``v_k`` below ``theta (1 - s_k / sigma_plus)^30``, and entries of any
        kept vector below ``theta / 750``, are zeroed (0: no sparsification).
      split: Algorithm 1 splits a layer into two factors when that saves parameters (the
        layer is then never pruned again and keeps its rank).
      top_k: how many top singular values / vectors are tracked per layer.
      experiment: ``"train"``, ``"scaling"`` (sweep ``scaling_widths``) or ``"noise"``.
      scaling_widths: the ``N`` of ``[d_0, N, N, d_L]`` in the scaling experiment.
      noise_levels: the ``c`` of eps = c / N (``noise_eps="variance_c_over_N"``) or the
        standard deviations eps (``noise_eps="std"``) of the noise experiment.
      noise_draws: noise draws averaged per level.
      noise_layers: ``"middle"`` (the middle layer only) or ``"non_final"`` (every layer but
        the last, as in the papers).
      noise_eps: ``"variance_c_over_N"``: ``E ~ N(0, c / N)`` (variance ``c/N``, ``N`` the
        fan-in); ``"std"``: ``E ~ N(0, eps^2)``, eps a standard deviation.
      noise_arm: the arm whose trained members are perturbed (``None``: every member).
    """

    name: str = "custom"
    widths: tuple[int, ...] = (784, 512, 512, 10)
    activation: str = "relu"
    init_scaling: str = "1/N"
    g: float = 2.0
    use_bias: bool = True
    input_scaling: str = "standard"
    input_max_norm: float = 0.05
    dataset: str = "fashion_mnist"
    n_train: int | None = None
    n_test: int | None = None
    teacher_rank: int = 4
    teacher_hidden: int = 64
    optimizer: str = "sgd"
    momentum: float = 0.9
    lr: float = 0.01
    lr_decay: float = 0.96
    lr_decay_every: int = 4
    batch_size: int = 128
    epochs: int = 5
    seeds: tuple[int, ...] = (0,)
    arms: tuple[Arm, ...] = (Arm("L2", l2=1e-4),)
    prune_every: int = 4
    prune_horizon: float = 200.0
    fit_error_max: float = 0.1
    sparsify_theta: float = 0.0
    split: bool = False
    top_k: int = 8
    experiment: str = "train"
    scaling_widths: tuple[int, ...] = (64, 128, 256)
    noise_levels: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)
    noise_draws: int = 4
    noise_layers: str = "middle"
    noise_eps: str = "variance_c_over_N"
    noise_arm: str | None = None

    @property
    def members(self) -> list[tuple[Arm, int]]:
        """``[(arm, seed), ...]`` in member order (arm-major)."""
        return [(arm, seed) for arm in self.arms for seed in self.seeds]

    @property
    def n_layers(self) -> int:
        """Number of weight matrices ``len(widths) - 1``."""
        return len(self.widths) - 1


def member_strengths(config: DynamicsConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(l1, l2)``: the regularisation strengths of every member, two float32 arrays ``(M,)``.

    Examples:
      >>> config = DynamicsConfig(seeds=(0, 1), arms=(Arm("none"), Arm("L2", l2=0.5)))
      >>> member_strengths(config)[1].tolist()
      [0.0, 0.0, 0.5, 0.5]
    """
    l1 = np.asarray([arm.l1 for arm, _ in config.members], np.float32)
    l2 = np.asarray([arm.l2 for arm, _ in config.members], np.float32)
    return l1, l2


def to_dict(config: DynamicsConfig) -> dict[str, Any]:
    """A JSON-ready dict (tuples become lists, arms become dicts)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(raw: Mapping[str, Any]) -> DynamicsConfig:
    """A validated :class:`DynamicsConfig` from a dict (e.g. parsed JSON).

    Raises:
      ValueError: on unknown keys or any check of :func:`validate`.
    """
    fields = {f.name for f in dataclasses.fields(DynamicsConfig)}
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise ValueError(f"config: unknown keys {unknown}; valid keys are {sorted(fields)}")
    kw = dict(raw)
    for key in ("widths", "seeds", "scaling_widths", "noise_levels"):
        if key in kw:
            kw[key] = tuple(kw[key])
    if "arms" in kw:
        arms = []
        for i, a in enumerate(kw["arms"]):
            if not isinstance(a, Mapping) or "name" not in a:
                raise ValueError(f"config.arms[{i}]: expected a dict with 'name', got {a!r}")
            arms.append(Arm(**a))
        kw["arms"] = tuple(arms)
    return validate(DynamicsConfig(**kw))


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def validate(config: DynamicsConfig) -> DynamicsConfig:
    """Check a config before anything trains; returns it unchanged.

    Raises:
      ValueError: naming the field and the fix (impossible shapes, negative strengths ...).
    """
    c = config
    _check(len(c.widths) >= 2, f"config.widths={c.widths}: need at least [d_in, d_out]")
    _check(
        all(isinstance(w, int) and w >= 1 for w in c.widths),
        f"config.widths={c.widths}: every width must be a positive integer",
    )
    if c.dataset == "fashion_mnist":
        _check(
            c.widths[0] == 784,
            f"config.widths[0]={c.widths[0]}: Fashion-MNIST inputs "
            "have 784 features; set widths[0]=784",
        )
    _check(c.widths[-1] >= 2, f"config.widths[-1]={c.widths[-1]}: need >= 2 classes")
    if c.dataset == "fashion_mnist":
        _check(
            c.widths[-1] == 10,
            f"config.widths[-1]={c.widths[-1]}: Fashion-MNIST has 10 classes; set widths[-1]=10",
        )
    _check(c.activation in ACTIVATIONS, f"config.activation={c.activation!r}: use {ACTIVATIONS}")
    _check(c.init_scaling in INITS, f"config.init_scaling={c.init_scaling!r}: use one of {INITS}")
    _check(
        c.input_scaling in INPUT_SCALINGS,
        f"config.input_scaling={c.input_scaling!r}: use one of {INPUT_SCALINGS}",
    )
    _check(c.input_max_norm > 0, f"config.input_max_norm={c.input_max_norm}: must be > 0")
    _check(c.sparsify_theta >= 0, f"config.sparsify_theta={c.sparsify_theta}: must be >= 0")
    _check(c.noise_layers in NOISE_LAYERS, f"config.noise_layers: use one of {NOISE_LAYERS}")
    _check(c.noise_eps in NOISE_EPS, f"config.noise_eps={c.noise_eps!r}: use one of {NOISE_EPS}")
    _check(
        c.noise_arm is None or c.noise_arm in [a.name for a in c.arms],
        f"config.noise_arm={c.noise_arm!r}: not an arm name; use one of "
        f"{[a.name for a in c.arms]} or null",
    )
    if c.init_scaling in ("1/width", "1/width^2"):
        _check(
            len(set(c.widths[1:-1])) == 1,
            f"config.widths={c.widths}: init_scaling={c.init_scaling!r} needs equal hidden "
            "widths [d_in, N, ..., N, d_out]; use '1/N' for other nets",
        )
    _check(c.dataset in DATASETS, f"config.dataset={c.dataset!r}: use one of {DATASETS}")
    _check(c.optimizer in OPTIMIZERS, f"config.optimizer={c.optimizer!r}: use {OPTIMIZERS}")
    _check(c.experiment in EXPERIMENTS, f"config.experiment={c.experiment!r}: use {EXPERIMENTS}")
    _check(c.g > 0, f"config.g={c.g}: the init variance scale must be > 0")
    _check(c.lr > 0, f"config.lr={c.lr}: the learning rate must be > 0")
    _check(0 <= c.momentum < 1, f"config.momentum={c.momentum}: must lie in [0, 1)")
    _check(0 < c.lr_decay <= 1, f"config.lr_decay={c.lr_decay}: must lie in (0, 1]")
    for key in ("lr_decay_every", "batch_size", "prune_every", "top_k", "noise_draws"):
        _check(getattr(c, key) >= 1, f"config.{key}={getattr(c, key)}: must be >= 1")
    _check(c.epochs >= 0, f"config.epochs={c.epochs}: must be >= 0")
    _check(c.prune_horizon > 0, f"config.prune_horizon={c.prune_horizon}: must be > 0")
    _check(c.fit_error_max > 0, f"config.fit_error_max={c.fit_error_max}: must be > 0")
    _check(len(c.seeds) >= 1, "config.seeds: give at least one seed")
    _check(len(set(c.seeds)) == len(c.seeds), f"config.seeds={c.seeds}: seeds must be distinct")
    _check(len(c.arms) >= 1, "config.arms: give at least one arm")
    names = [a.name for a in c.arms]
    _check(len(set(names)) == len(names), f"config.arms: names {names} must be distinct")
    for i, a in enumerate(c.arms):
        _check(a.l1 >= 0, f"config.arms[{i}].l1={a.l1}: regularisation strengths must be >= 0")
        _check(a.l2 >= 0, f"config.arms[{i}].l2={a.l2}: regularisation strengths must be >= 0")
    for key in ("n_train", "n_test"):
        v = getattr(c, key)
        _check(v is None or v >= 1, f"config.{key}={v}: must be >= 1 or null")
    if c.n_train is not None:
        _check(
            c.n_train >= c.batch_size,
            f"config.n_train={c.n_train} < batch_size="
            f"{c.batch_size}: an epoch would have no step; lower batch_size",
        )
    if c.dataset == "teacher":
        _check(
            1 <= c.teacher_rank <= min(c.widths[0], c.teacher_hidden),
            f"config.teacher_rank={c.teacher_rank}: must lie in [1, min(widths[0], "
            f"teacher_hidden)]",
        )
    if c.experiment == "scaling":
        _check(
            len(c.widths) == 4,
            f"config.widths={c.widths}: the scaling experiment uses [d_in, N, N, d_out]",
        )
        _check(
            len(c.scaling_widths) >= 1 and all(n >= 2 for n in c.scaling_widths),
            f"config.scaling_widths={c.scaling_widths}: give widths >= 2",
        )
    if c.experiment == "noise":
        _check(
            len(c.widths) >= 4,
            f"config.widths={c.widths}: noise injection perturbs a "
            "middle layer; need >= 3 weight matrices",
        )
        _check(
            all(e >= 0 for e in c.noise_levels),
            f"config.noise_levels={c.noise_levels}: must be >= 0",
        )
    return c


def replace(config: DynamicsConfig, **changes: Any) -> DynamicsConfig:
    """``dataclasses.replace`` followed by :func:`validate`."""
    return validate(dataclasses.replace(config, **changes))
