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
from mpjax.dynamics.config import DynamicsConfig, load_config, member_strengths, validate
from mpjax.dynamics.data import StudyData, load_study_data, steps_per_epoch
from mpjax.dynamics.plots import plot_scaling, save_figure, save_run_plots
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


def run_scaling(config: DynamicsConfig, out: str, resume: bool = False) -> list[dict[str, Any]]:
    """Train ``[d_0, N, N, d_L]`` for each ``N`` and tabulate a_N, tau_N, edge, accuracy."""
    rows, data = [], None
    for N in config.scaling_widths:
        sub = validate(
            dataclasses.replace(
                config,
                name=f"{config.name}_N{N}",
                experiment="train",
                widths=(config.widths[0], N, N, config.widths[-1]),
            )
        )
        sub_out = os.path.join(out, f"N{N}")
        data = load_study_data(sub) if data is None else data
        resume_sub = resume or not os.path.exists(os.path.join(sub_out, "config.json"))
        train(sub, sub_out, resume=resume_sub, data=data)
        run = load_run(sub_out)
        mid = run.layers["Dense_1/kernel"]
        row = scaling_metrics(sub, load_params(sub_out, sub), data.x_test[:2000], mid["v_star"][-1])
        row.update(
            {
                "test_acc": float(run.metrics["test_acc"][-1].mean()),
                "sigma_plus_mid": float(mid["sigma_plus"][-1].mean()),
                "gN_mid": float(mid["gN"][-1].mean()),
            }
        )
        rows.append(row)
    store.write_json(os.path.join(out, "scaling.json"), rows)
    return rows


def noise_injection(
    config: DynamicsConfig, params: PyTree, data: StudyData, seed: int = 0
) -> list[dict[str, Any]]:
    """Test CE / accuracy / regularised loss after adding ``N(0, c/N)`` to the middle layer.

    The middle layer is ``Dense_{L//2}`` with ``N`` its fan-in. Members are averaged.
    """
    mid = config.n_layers // 2
    N = config.widths[mid]
    l1, l2 = member_strengths(config)
    xt, yt = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
    key = jax.random.key(seed)
    rows = []
    for c in config.noise_levels:
        ce, acc, J = [], [], []
        for _ in range(config.noise_draws if c > 0 else 1):
            key, sub = jax.random.split(key)
            K = params[f"Dense_{mid}"]["kernel"]
            noisy = {
                **params,
                f"Dense_{mid}": {
                    **params[f"Dense_{mid}"],
                    "kernel": K + jnp.sqrt(c / N) * jax.random.normal(sub, K.shape, K.dtype),
                },
            }
            ce_m, acc_m = evaluate_members(config, noisy, xt, yt)
            pen = np.asarray(jax.vmap(params_penalty)(noisy, l1, l2))
            ce.append(ce_m.mean())
            acc.append(acc_m.mean())
            J.append((ce_m + pen).mean())
        rows.append(
            {
                "c": float(c),
                "eps": float(c / N),
                "test_ce": float(np.mean(ce)),
                "test_acc": float(np.mean(acc)),
                "J": float(np.mean(J)),
            }
        )
    return rows


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
    return result
