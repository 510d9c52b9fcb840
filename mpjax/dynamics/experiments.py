"""Reading dynamics runs back, and the three experiments of the L2 study.

The theory and the papers' protocols: `docs/method/l2-theory.md`.


* ``experiment="train"``: one run (e.g. the regularisation comparison none / MP / L1+L2 /
  MP+L1+L2 / MP+L2); :func:`arm_table` gives the final test accuracy per arm.
* ``experiment="scaling"``: ``[d_0, N, N, d_L]`` for each ``N`` in ``scaling_widths``;
  :func:`scaling_metrics` gives ``a_N = mean_s ||W3||_inf ||W1 s||_2 sqrt(log(2N)/N)`` over
  the test inputs ``s`` (``W1 s`` without bias, ``||.||_inf`` the max abs row sum of the
  ``(d_out, d_in)`` view) and ``tau_N = sqrt(2 v* log(2 N^2 / delta))``, the entrywise noise
  threshold of the certificates (`docs/method/certificates.md`) for the middle ``N x N`` layer (``t = sqrt(2 g log(2NM/delta)/N)``
  with ``g = N v*`` fitted, ``delta = 0.05``).
* ``experiment="noise"``: adds ``E_ij ~ N(0, eps)``, ``eps = c / N``, to the middle layer of
  the trained net and reports the test CE, accuracy and the regularised loss
  ``J = CE + l2 ||W||_F^2 + l1 ||W||_1`` (mean over ``noise_draws`` draws).

References:
  [P25] Berlyand et al., arXiv 2503.01922, §5 (L2 training dynamics, the experiments).
  [P26] Berlyand et al., arXiv 2606.02608, ESM2 (the protocols) and the entrywise threshold.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mpjax.certificates import params_penalty
from mpjax.dynamics import store
from mpjax.dynamics.config import DynamicsConfig, member_strengths, validate
from mpjax.dynamics.data import StudyData, load_study_data, steps_per_epoch
from mpjax.dynamics.plots import plot_noise, plot_scaling, save_figure, save_run_plots
from mpjax.dynamics.presets import load_config
from mpjax.dynamics.record import layer_paths
from mpjax.dynamics.trainer import evaluate_members, init_members, train

PyTree = Any
DELTA = 0.05


class Run(NamedTuple):
    """A recorded run: ``epochs (E,)``, ``metrics[name] (E, M)``, ``layers[path][field] (E, M, ...)``."""

    config: DynamicsConfig
    epochs: np.ndarray
    metrics: dict[str, np.ndarray]
    layers: dict[str, dict[str, np.ndarray]]

    @property
    def member_names(self) -> list[str]:
        """``"arm/seedS"`` per member."""
        return [f"{a.name}/seed{s}" for a, s in self.config.members]


def load_run(out: str) -> Run:
    """Read a run directory written by :func:`mpjax.dynamics.trainer.train` (epochs of its index).

    Raises:
      ValueError: when the run has no recorded epoch or a record file is unreadable.
    """
    config = load_config(os.path.join(out, "config.json"))
    entries = store.read_index(out)
    if not entries:
        raise ValueError(f"{out}: no recorded epoch in index.jsonl; run mpjax dynamics first")
    recs = [store.read_epoch(out, e["epoch"]) for e in entries]
    metrics = {
        k.split("/", 1)[1]: np.stack([r[k] for r in recs])
        for k in recs[0]
        if k.startswith("metrics/")
    }
    layers: dict[str, dict[str, np.ndarray]] = {}
    for path in layer_paths(config):
        fields = [k[len(path) + 1 :] for k in recs[0] if k.startswith(path + "/")]
        layers[path] = {f: np.stack([r[f"{path}/{f}"] for r in recs]) for f in fields}
    return Run(config, np.array([e["epoch"] for e in entries]), metrics, layers)


def final_overlaps(run: Run, path: str, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``||U_k(e)^T U_k(final)||_F^2 / k`` and the same for ``V``, arrays ``(E, M)``.

    ``k`` (default: all recorded ``top_k``) selects the leading ``k`` singular vectors.
    """
    k = run.layers[path]["U_top"].shape[-1] if k is None else k
    U, V = run.layers[path]["U_top"][..., :k], run.layers[path]["V_top"][..., :k]
    ou = np.sum(np.einsum("emik,emil->emkl", U, U[-1][None]) ** 2, axis=(2, 3)) / k
    ov = np.sum(np.einsum("emik,emil->emkl", V, V[-1][None]) ** 2, axis=(2, 3)) / k
    return ou, ov


def arm_table(run: Run) -> list[dict[str, Any]]:
    """Per arm: final test accuracy (mean, std over seeds), effective params, final losses."""
    rows = []
    for arm in run.config.arms:
        idx = [m for m, (a, _) in enumerate(run.config.members) if a.name == arm.name]
        acc = run.metrics["test_acc"][-1, idx]
        rows.append(
            {
                "arm": arm.name,
                "l1": arm.l1,
                "l2": arm.l2,
                "mp": arm.mp,
                "test_acc_mean": float(np.mean(acc)),
                "test_acc_std": float(np.std(acc)),
                "test_acc": [float(a) for a in acc],
                "test_ce": float(np.mean(run.metrics["test_ce"][-1, idx])),
                "params_effective": float(np.mean(run.metrics["params_effective"][-1, idx])),
                "epochs": int(run.epochs[-1]),
            }
        )
    return rows


def load_params(out: str, config: DynamicsConfig) -> PyTree:
    """The stacked member params of the run's last checkpoint."""
    n_steps = steps_per_epoch(config, config.n_train or 1 << 30)
    target = jax.eval_shape(lambda: init_members(config, max(n_steps, 1)))
    ck = store.load_checkpoint(out, target)
    if ck is None:
        raise ValueError(f"{out}: no checkpoint.npz; run mpjax dynamics first")
    return ck[1][0]


def scaling_metrics(
    config: DynamicsConfig, params: PyTree, x_test: np.ndarray, v_star: np.ndarray
) -> dict[str, float]:
    """``a_N`` (mean and median over test inputs and members) and ``tau_N`` for one width."""
    N = config.widths[1]
    W1 = np.asarray(params["Dense_0"]["kernel"])  # (M, d_0, N)
    W3 = np.asarray(params["Dense_2"]["kernel"])  # (M, N, d_L)
    w3_inf = np.max(np.sum(np.abs(W3), axis=1), axis=-1)  # max abs row sum of the view
    w1s = np.linalg.norm(np.einsum("nd,mdk->mnk", x_test, W1), axis=-1)  # (M, n)
    a = w3_inf[:, None] * w1s * np.sqrt(np.log(2 * N) / N)
    tau = np.sqrt(2 * np.asarray(v_star) * np.log(2 * N * N / DELTA))
    return {
        "N": N,
        "a_N_mean": float(a.mean()),
        "a_N_median": float(np.median(a)),
        "tau_N": float(np.mean(tau)),
    }


def max_norm_input(data: StudyData) -> np.ndarray:
    """The input ``s`` of largest l2 norm over the train and test inputs, ``(d_0,)``."""
    x = np.concatenate([data.x_train, data.x_test])
    return x[int(np.argmax(np.linalg.norm(x, axis=1)))]


def tau_diag_terms(params: PyTree, s: np.ndarray, N: int) -> dict[str, np.ndarray]:
    """The papers' outer-layer quantities of ``[d_0, N, N, d_L]`` at one input, per member.

    With ``||W3||_inf`` the max abs row sum of the ``(d_L, N)`` view and ``W1 s`` without
    bias: ``a_th = ||W3||_inf ||W1 s||_2 sqrt(log(2N) / N)``,
    ``a_emp = ||W3||_inf ||W1 s||_2 / N^(3/8)`` and ``tau_diag = sqrt(2) a_th + a_emp``.

    Args:
      params: stacked member params (leading member axis).
      s: one input ``(d_0,)`` (the papers take the one of largest norm).
      N: the hidden width.

    Returns:
      ``{"a_th", "a_emp", "tau_diag", "w3_inf", "w1s"}``, arrays ``(M,)`` in float64.
    """
    W1 = np.asarray(params["Dense_0"]["kernel"], np.float64)  # (M, d_0, N)
    W3 = np.asarray(params["Dense_2"]["kernel"], np.float64)  # (M, N, d_L)
    w3_inf = np.max(np.sum(np.abs(W3), axis=1), axis=-1)
    w1s = np.linalg.norm(np.einsum("d,mdk->mk", np.asarray(s, np.float64), W1), axis=-1)
    a_th = w3_inf * w1s * np.sqrt(np.log(2 * N) / N)
    a_emp = w3_inf * w1s / N ** (3 / 8)
    return {
        "a_th": a_th,
        "a_emp": a_emp,
        "tau_diag": np.sqrt(2) * a_th + a_emp,
        "w3_inf": w3_inf,
        "w1s": w1s,
    }


def _tau_fields(init: PyTree, trained: PyTree, s: np.ndarray, N: int) -> dict[str, Any]:
    """Seed means (and per-seed lists) of :func:`tau_diag_terms` at init and trained."""
    row: dict[str, Any] = {}
    for tag, params in (("_init", init), ("", trained)):
        for key, vals in tau_diag_terms(params, s, N).items():
            row[f"{key}{tag}"] = float(np.mean(vals))
            row[f"{key}{tag}_seeds"] = [float(v) for v in vals]
    return row


def run_scaling(config: DynamicsConfig, out: str, resume: bool = False) -> list[dict[str, Any]]:
    """Train ``[d_0, N, N, d_L]`` for each ``N``; tabulate a_N, tau_N, tau_diag, accuracy.

    Besides the older test-mean ``a_N`` and entrywise ``tau_N`` (:func:`scaling_metrics`),
    every row holds the papers' ``a_th``, ``a_emp`` and ``tau_diag`` at the input of largest
    norm (:func:`max_norm_input`), at initialisation (``*_init``) and after training.
    """
    rows, data = [], None
    for N in config.scaling_widths:
        sub = validate(
            dataclasses.replace(
                config,
                name=f"{config.name}_N{N}",
                experiment="train",
                widths=(config.widths[0], N, N, config.widths[-1]),
                scaling_widths=(N,),
            )
        )
        sub_out = os.path.join(out, f"N{N}")
        data = load_study_data(sub) if data is None else data
        resume_sub = resume or not os.path.exists(os.path.join(sub_out, "config.json"))
        train(sub, sub_out, resume=resume_sub, data=data)
        run = load_run(sub_out)
        mid = run.layers["Dense_1/kernel"]
        row = scaling_metrics(sub, load_params(sub_out, sub), data.x_test[:2000], mid["v_star"][-1])
        n_steps = steps_per_epoch(sub, len(data.y_train))
        init = init_members(sub, n_steps)[0]
        row.update(_tau_fields(init, load_params(sub_out, sub), max_norm_input(data), N))
        row.update(
            {
                "epochs": int(run.epochs[-1]),
                "max_input_norm": float(np.linalg.norm(max_norm_input(data))),
                "test_acc_seeds": [float(v) for v in run.metrics["test_acc"][-1]],
                "train_acc": float(run.metrics["train_acc"][-1].mean()),
                "test_acc": float(run.metrics["test_acc"][-1].mean()),
                "sigma_plus_mid": float(mid["sigma_plus"][-1].mean()),
                "gN_mid": float(mid["gN"][-1].mean()),
            }
        )
        rows.append(row)
    store.write_json(os.path.join(out, "scaling.json"), rows)
    return rows


def _noise_std(config: DynamicsConfig, level: float, layer: int) -> float:
    """Standard deviation of the noise added to ``Dense_{layer}`` at one noise level."""
    if config.noise_eps == "std":
        return float(level)
    return float(np.sqrt(level / config.widths[layer]))


def noisy_layers(config: DynamicsConfig) -> list[int]:
    """The perturbed layers: every non-final one, or only the middle ``Dense_{L//2}``."""
    if config.noise_layers == "non_final":
        return list(range(config.n_layers - 1))
    return [config.n_layers // 2]


def perturb(config: DynamicsConfig, params: PyTree, level: float, key: jax.Array) -> PyTree:
    """``params`` with ``E ~ N(0, std^2)`` added to the kernels of :func:`noisy_layers`."""
    out = dict(params)
    for i in noisy_layers(config):
        key, sub = jax.random.split(key)
        K = params[f"Dense_{i}"]["kernel"]
        E = _noise_std(config, level, i) * jax.random.normal(sub, K.shape, K.dtype)
        out[f"Dense_{i}"] = {**params[f"Dense_{i}"], "kernel": K + E}
    return out


def _noise_members(config: DynamicsConfig) -> list[int]:
    arm = config.noise_arm
    return [m for m, (a, _) in enumerate(config.members) if arm is None or a.name == arm]


def noise_injection(
    config: DynamicsConfig, params: PyTree, data: StudyData, seed: int = 0
) -> list[dict[str, Any]]:
    """CE, accuracy (train and test) and regularised losses after perturbing the weights.

    Per level of ``noise_levels``: the kernels of :func:`noisy_layers` get iid Gaussian
    noise, of standard deviation ``eps`` (``noise_eps="std"``) or of variance ``c / N``
    (``"variance_c_over_N"``, ``N`` the fan-in); the members of ``noise_arm`` (all when
    ``None``) are evaluated, averaged over ``noise_draws`` draws and then over members.
    ``J = CE + l2 ||W||_F^2 + l1 ||W||_1`` is the member's own loss, ``J_l2 = CE + l2 ||W||_F^2``
    the L2-regularised loss alone.
    """
    idx = np.asarray(_noise_members(config))
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[idx], params)
    l1, l2 = (a[idx] for a in member_strengths(config))
    mid = config.n_layers // 2
    key, rows = jax.random.key(seed), []
    for c in config.noise_levels:
        acc_sum: dict[str, list[np.ndarray]] = {}
        for _ in range(config.noise_draws if c > 0 else 1):
            key, sub = jax.random.split(key)
            noisy = perturb(config, params, c, sub)
            vals = _noisy_eval(config, noisy, data, l1, l2)
            for k, v in vals.items():
                acc_sum.setdefault(k, []).append(v)
        row = {k: float(np.mean(v)) for k, v in acc_sum.items()}
        row.update({k + "_seeds": np.mean(v, axis=0).tolist() for k, v in acc_sum.items()})
        eps = float(c) if config.noise_eps == "std" else float(c / config.widths[mid])
        row.update({"c": float(c), "eps": eps, "eps_is": _EPS_IS[config.noise_eps]})
        rows.append(row)
    return rows


_EPS_IS = {"std": "std", "variance_c_over_N": "variance"}


def _noisy_eval(
    config: DynamicsConfig, params: PyTree, data: StudyData, l1: np.ndarray, l2: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-member test (and, for ``non_final``, train) CE / accuracy and the losses."""
    ce, acc = evaluate_members(config, params, jnp.asarray(data.x_test), jnp.asarray(data.y_test))
    zero = np.zeros_like(l1)
    out = {
        "test_ce": ce,
        "test_acc": acc,
        "J": ce + np.asarray(jax.vmap(params_penalty)(params, l1, l2)),
        "J_l2": ce + np.asarray(jax.vmap(params_penalty)(params, zero, l2)),
    }
    if config.noise_layers == "non_final":
        x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
        out["train_ce"], out["train_acc"] = evaluate_members(config, params, x, y)
    return out


def run_experiment(
    config: DynamicsConfig, out: str, resume: bool = False, plots: bool = True
) -> dict[str, Any]:
    """Run the config's experiment under ``out``; returns (and writes) a JSON-ready summary.

    Args:
      config: the run's config; ``config.experiment`` picks train, scaling or noise.
      out: the run directory.
      resume: extend the run(s) already in ``out``.
      plots: write the PNG plots under ``out/plots``.
    """
    if config.experiment == "scaling":
        rows = run_scaling(config, out, resume)
        if plots:
            save_figure(plot_scaling(rows), os.path.join(out, "plots", "scaling.png"))
        return {"experiment": "scaling", "rows": rows}
    train(config, out, resume=resume)
    run = load_run(out)
    result: dict[str, Any] = {
        "experiment": config.experiment,
        "config": config.name,
        "arms": arm_table(run),
    }
    if config.experiment == "noise":
        data = load_study_data(config)
        result["noise"] = noise_injection(config, load_params(out, config), data)
    store.write_json(os.path.join(out, "summary.json"), result)
    if plots:
        save_run_plots(run, os.path.join(out, "plots"))
        if config.experiment == "noise":
            save_figure(plot_noise(result["noise"]), os.path.join(out, "plots", "noise.png"))
    return result
