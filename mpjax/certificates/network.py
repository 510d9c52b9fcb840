"""Certify a pruning step of a Flax network: :func:`certify_network` and its typed reports.

The math lives in :mod:`mpjax.certificates.bounds` and :mod:`mpjax.certificates.statements`;
the layer inputs ``psi1`` and the Lipschitz constants ``L_s`` come from
:mod:`mpjax.certificates.capture`. This module connects them to models:

* :func:`certify_network` compares a dense and a pruned parameter tree layer by layer
  (single-layer bounds in the dense network) and as a sequence (statement 8: each bound in
  the network whose earlier layers are already pruned), with margins and the elastic-net
  verdict. ``R = A_dense - A_pruned`` and ``S = A_pruned``, so ``theta = 1`` is the dense net.
* :func:`mlp_from_params` rebuilds the :class:`~mpjax.models.mlp.MLP` of a checkpoint.
* :func:`format_report` renders a :class:`CertifyReport` as the table ``mpjax certify``
  prints (the command itself is :mod:`mpjax.cli.certify`).

See ``docs/method/certificates.md`` for the statements and their hypotheses.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from mpjax import tree
from mpjax.certificates.bounds import PathBound, data_path_bound
from mpjax.certificates.capture import LipschitzFn, capture_inputs
from mpjax.certificates.checks import (
    Check,
    check_bound,
    check_logit_drift,
    check_margins,
    check_path_bound,
)
from mpjax.certificates.objectives import accuracy, cross_entropy
from mpjax.certificates.statements import (
    ElasticNetCertificate,
    MarginCertificate,
    TelescopedBound,
    elastic_net_certificate,
    frobenius_certificate,
    margin_certificate,
    telescope,
)

PyTree = Any
Array = Any

__all__ = [
    "LayerReport",
    "CertifyReport",
    "certify_network",
    "mlp_from_params",
    "format_report",
]


@functools.lru_cache(maxsize=32)
def _apply_fn(model: nn.Module) -> Callable:
    return jax.jit(lambda params, x: model.apply({"params": params}, x))


class LayerReport(NamedTuple):
    """One layer pruned alone in the dense network.

    Attributes:
      path: kernel path.
      path_bound: its :class:`~mpjax.certificates.bounds.PathBound` in the dense network.
      elastic: statement 4 (disjoint supports) verdict.
      frobenius: statement 5 verdict.
      margin: statement 2 at ``theta = 0``.
      path_check: statement 1 on measured CE.
      ce_change: measured ``CE(pruned layer) - CE(dense)``.
    """

    path: str
    path_bound: PathBound
    elastic: ElasticNetCertificate
    frobenius: ElasticNetCertificate
    margin: MarginCertificate
    path_check: Check
    ce_change: float


class CertifyReport(NamedTuple):
    """Whole-network result of :func:`certify_network`.

    Attributes:
      layers: per-layer reports.
      telescoped: statement 8 bounds.
      margin: statement 2 with the telescoped ``eta``.
      objective_bound: bound on ``J(pruned) - J(dense)``
        (``sum_k B^(k) - l2||R_k||^2 - l1||R_k||_1``).
      elastic_certified: ``objective_bound < 0`` with hypotheses holding.
      hypotheses_hold: provable ``L_s`` and ``S_k o R_k = 0`` for every layer.
      ce_dense: measured CE of the dense network on the data.
      ce_pruned: measured CE of the pruned network.
      acc_dense: measured accuracy of the dense network.
      acc_pruned: measured accuracy of the pruned network.
      checks: statements 1/2 verified on the measured pruned network.
    """

    layers: tuple[LayerReport, ...]
    telescoped: TelescopedBound
    margin: MarginCertificate
    objective_bound: float
    elastic_certified: bool
    hypotheses_hold: bool
    ce_dense: float
    ce_pruned: float
    acc_dense: float
    acc_pruned: float
    checks: tuple[Check, ...]


def _split(dense: PyTree, pruned: PyTree, paths: Sequence[str]) -> dict[str, tuple[Array, Array]]:
    vd, vp = tree.select(dense, include=list(paths)), tree.select(pruned, include=list(paths))
    out = {}
    for p in paths:
        if p not in vd or p not in vp:
            raise ValueError(
                f"--layer {p}: missing in the {'dense' if p not in vd else 'pruned'} params."
            )
        if vd[p].shape != vp[p].shape:
            raise ValueError(
                f"{p}: dense shape {vd[p].shape} != pruned shape {vp[p].shape}; "
                "both checkpoints must have the same architecture."
            )
        a = tree.to_matrix(tree.flatten(dense)[p], vd[p])
        s = tree.to_matrix(tree.flatten(pruned)[p], vp[p])
        out[p] = (jnp.asarray(s), jnp.asarray(a) - jnp.asarray(s))
    return out


def certify_network(
    model: nn.Module,
    dense: PyTree,
    pruned: PyTree,
    x: Array,
    labels: Array,
    layers: Sequence[str],
    lipschitz_fn: LipschitzFn,
    l1: float = 0.0,
    l2: float = 0.0,
) -> CertifyReport:
    """Certify replacing ``layers`` of ``dense`` by those of ``pruned`` on data ``(x, labels)``.

    Args:
      model: Linen module; ``model.apply({"params": p}, x)`` gives logits.
      dense: parameter tree of the dense network.
      pruned: parameter tree of the pruned network (same architecture).
      x: inputs of the sample set ``T`` (non-empty).
      labels: integer labels of ``T``, one per input.
      layers: kernel paths, pruned in this order for the telescoped statement.
      lipschitz_fn: ``(params, path) -> (L, provable)`` in the given network, e.g.
        ``functools.partial(mlp_lipschitz_bound, activation="relu")`` (see
        :mod:`mpjax.certificates.capture`).
      l1: l1 strength of ``J``.
      l2: l2 strength of ``J``.

    Returns:
      The :class:`CertifyReport`.

    Raises:
      ValueError: on an empty or mislabelled sample set, no layers, a path that is not a
        weight matrix of both trees, or shapes that differ.
    """
    if len(x) == 0 or len(x) != len(labels):
        raise ValueError(
            f"data: need a non-empty sample set with one label per sample "
            f"(got {len(x)} inputs, {len(labels)} labels)."
        )
    if not layers:
        raise ValueError("--layer: name at least one weight-matrix path to certify.")
    parts = _split(dense, pruned, layers)
    views = tree.select(dense, include=list(layers))
    apply = _apply_fn(model)
    z_dense, psi = capture_inputs(model, dense, x, layers)
    ce_dense = float(cross_entropy(z_dense, labels))
    reports = []
    for p in layers:
        s, r = parts[p]
        lip, provable = lipschitz_fn(dense, p)
        b = data_path_bound(r, psi[p], lip, provable)
        z1 = apply(tree.replace_matrices(dense, {p: s}, views), x)
        ce1 = float(cross_entropy(z1, labels))
        reports.append(
            LayerReport(
                p,
                b,
                elastic_net_certificate(s, r, b, l1, l2),
                frobenius_certificate(s, r, b, l2),
                margin_certificate(z_dense, b, 0.0, labels),
                check_path_bound(jnp.zeros(1), jnp.array([ce1]), ce_dense, b),
                ce1 - ce_dense,
            )
        )
    steps, current = [], dense
    for p in layers:  # statement 8: bound of step k in the network N_{k-1}
        s, r = parts[p]
        _, psi_k = capture_inputs(model, current, x, layers)  # same compiled function
        lip, provable = lipschitz_fn(current, p)
        steps.append(data_path_bound(r, psi_k[p], lip, provable))
        current = tree.replace_matrices(current, {p: s}, views)
    tele = telescope(steps)
    z_pruned = apply(current, x)
    margin = margin_certificate(
        z_dense, PathBound(tele.total, tele.eta, None, None, tele.provable), 0.0, labels
    )
    reg = sum(float(rep.elastic.l2_term + rep.elastic.l1_term) for rep in reports)
    bound = float(tele.total - reg)
    hyp = bool(tele.provable and all(rep.elastic.disjoint for rep in reports))
    checks = (
        check_bound(
            "8: telescoped CE bound",
            tele.total,
            abs(float(cross_entropy(z_pruned, labels)) - ce_dense),
            1e-5,
        ),
        check_logit_drift(z_dense, z_pruned, PathBound(tele.total, tele.eta, None, None, True)),
        check_margins(z_dense, z_pruned, margin),
    )
    return CertifyReport(
        tuple(reports),
        tele,
        margin,
        bound,
        bool(hyp and bound < 0),
        hyp,
        ce_dense,
        float(cross_entropy(z_pruned, labels)),
        float(accuracy(z_dense, labels)),
        float(accuracy(z_pruned, labels)),
        checks,
    )


def mlp_from_params(params: PyTree, activation: str = "relu") -> nn.Module:
    """The :class:`mpjax.models.mlp.MLP` whose ``Dense_i`` kernels are in ``params``.

    Raises:
      ValueError: if ``params`` is not an MLP tree ``{"Dense_0": {"kernel", ...}, ...}``.
    """
    from mpjax.models.mlp import MLP

    n = sum(1 for k in params if re.fullmatch(r"Dense_\d+", str(k)))
    if n == 0 or any(f"Dense_{i}" not in params for i in range(n)):
        raise ValueError(
            "checkpoint: certify needs an MLP (layers Dense_0..Dense_{L-1}); for other "
            "models call mpjax.certificates.network.certify_network with a Lipschitz estimate."
        )
    widths = [int(params["Dense_0"]["kernel"].shape[0])]
    widths += [int(params[f"Dense_{i}"]["kernel"].shape[1]) for i in range(n)]
    return MLP(tuple(widths), activation, "bias" in params["Dense_0"])


def format_report(rep: CertifyReport, l1: float, l2: float) -> str:
    """A plain-text table of a :class:`CertifyReport` (what ``mpjax certify`` prints).

    The printed wording ("telescoped budget", "budgets are estimates") is the command's
    output format and stays as it is; in the code these quantities are path bounds.

    Args:
      rep: the report of :func:`certify_network`.
      l1: the l1 strength the report was computed with.
      l2: the l2 strength the report was computed with.
    """
    lines = [
        f"{'layer':<22}{'B_T':>11}{'l2|R|^2+l1|R|_1':>18}{'elastic-net':>13}{'hyp.':>6}"
        f"{'certified share':>17}{'dCE (meas.)':>13}"
    ]
    for r in rep.layers:
        e = r.elastic
        lines.append(
            f"{r.path:<22}{float(r.path_bound.bound):11.4g}{float(e.l2_term + e.l1_term):18.4g}"
            f"{'certified' if e.certified else 'no':>13}{'yes' if e.hypotheses_hold else 'NO':>6}"
            f"{float(r.margin.share):17.3f}{r.ce_change:13.4g}"
        )
    lines += [
        f"telescoped budget sum_k B_T^(k) = {float(rep.telescoped.total):.4g} "
        f"(provable L_s: {rep.telescoped.provable})",
        f"certified-preserved share of samples: {float(rep.margin.share):.3f}; accuracy change "
        f"<= {float(rep.margin.accuracy_change_bound):.3f} (measured {rep.acc_pruned - rep.acc_dense:+.4f})",
        f"elastic-net (l1={l1:g}, l2={l2:g}): J(pruned) - J(dense) <= {rep.objective_bound:.4g} -> "
        f"{'CERTIFIED decrease' if rep.elastic_certified else 'not certified'}; "
        f"hypotheses (provable L_s, S o R = 0) hold: {rep.hypotheses_hold}",
        f"CE dense {rep.ce_dense:.4f} -> pruned {rep.ce_pruned:.4f}; accuracy "
        f"{rep.acc_dense:.4f} -> {rep.acc_pruned:.4f}",
    ]
    prov = rep.telescoped.provable
    disjoint = all(r.elastic.disjoint for r in rep.layers)
    lines.append(
        f"hypotheses: statements 1,2,3,8 (provable L_s): {prov}; 4,6,7 (provable L_s and "
        f"S o R = 0): {prov and disjoint}; 5 (any split): {prov}"
        + ("" if prov else "  [L_s ESTIMATED: budgets are estimates, not certificates]")
    )
    lines += [
        f"check {c.statement}: {'ok' if c.holds else 'VIOLATED'} (worst slack {c.worst_slack:.3g})"
        for c in rep.checks
    ]
    return "\n".join(lines)
