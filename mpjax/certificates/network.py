"""Certificates on Flax networks: capture ``psi1``, bound ``L_s``, certify a pruned checkpoint.

The math lives in :mod:`mpjax.certificates.bounds`; this module connects it to models:

* :func:`capture_inputs` records the input ``psi1(s)`` of any Linen ``Dense`` /
  ``DenseGeneral`` layer with ``flax.linen.intercept_methods`` (no change to the model);
  :class:`mpjax.models.mlp.MLP` also sows them as ``intermediates/input_{i}``.
* :func:`mlp_lipschitz_bound` gives the provable ``L_s = prod_{k > i} ||W_k||_inf`` for
  ``Dense_i`` of an MLP with a coordinatewise 1-Lipschitz activation.
* :func:`certify_network` compares a dense and a pruned parameter tree layer by layer
  (single-layer budgets in the dense network) and as a sequence (statement 8: each budget in
  the network whose earlier layers are already pruned), with margins and the elastic-net
  verdict. ``R = A_dense - A_pruned`` and ``S = A_pruned``, so ``theta = 1`` is the dense net.
* :func:`main_certify` is ``mpjax certify``.
"""

from __future__ import annotations

import argparse
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mpjax import tree as mtree
from mpjax.certificates import bounds as C
from mpjax.certificates.objectives import accuracy, cross_entropy

PyTree = Any
Array = Any
LipschitzFn = Callable[[PyTree, str], tuple[Any, bool]]


def capture_inputs(
    model: nn.Module, params: PyTree, x: Array, paths: Sequence[str]
) -> tuple[Array, dict[str, Array]]:
    """Logits and ``{kernel path: psi1}`` with ``psi1`` of shape ``(batch, [tokens,] d_in)``.

    Raises:
      ValueError: if a path is not a weight matrix of ``params`` or its module never ran.
    """
    views = mtree.select(params, include=list(paths))
    missing = [p for p in paths if p not in views]
    if missing:
        raise ValueError(
            f"--layer {missing[0]}: not a weight-matrix path of the model; "
            f"choose from {sorted(mtree.select(params))}."
        )
    layers = tuple((p, views[p].layer) for p in paths)
    logits, seen = _capture_fn(model, layers)(params, x)
    for p in paths:
        if p not in seen:
            raise ValueError(f"--layer {p}: module {views[p].layer} was not called by the model.")
        v = seen[p].reshape(seen[p].shape[0], -1, views[p].d_in)  # tokens (and heads) flattened
        seen[p] = v[:, 0] if v.shape[1] == 1 else v
    return logits, seen


@functools.lru_cache(maxsize=32)
def _capture_fn(model: nn.Module, layers: tuple[tuple[str, str], ...]) -> Callable:
    """A jitted ``(params, x) -> (logits, {path: input})`` (cached: one compile per shape)."""
    wanted = {tuple(module.split("/")): path for path, module in layers}

    def run(params, x):
        seen: dict[str, Array] = {}

        def record(next_fun, args, kwargs, context):
            path = wanted.get(tuple(context.module.path))
            if context.method_name == "__call__" and path is not None and path not in seen:
                seen[path] = args[0]
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(record):
            logits = model.apply({"params": params}, x)
        return logits, seen

    return jax.jit(run)


@functools.lru_cache(maxsize=32)
def _apply_fn(model: nn.Module) -> Callable:
    return jax.jit(lambda params, x: model.apply({"params": params}, x))


def mlp_lipschitz_bound(params: PyTree, path: str, activation: str = "relu") -> tuple[float, bool]:
    """``(L, provable)`` for ``Dense_i/kernel`` of :class:`mpjax.models.mlp.MLP`.

    ``L = prod_{k > i} ||W_k||_inf`` (``W_k`` the ``(d_out, d_in)`` view of ``Dense_k``); 1 for
    the last layer (``psi2`` is a bias shift: exact).
    """
    m = re.fullmatch(r"Dense_(\d+)/kernel", path)
    if m is None:
        raise ValueError(f"{path}: not an MLP layer path 'Dense_<i>/kernel'.")
    i = int(m.group(1))
    mats = mtree.matrices(params)
    down = [
        mats[f"Dense_{k}/kernel"] for k in range(i + 1, len(mats)) if f"Dense_{k}/kernel" in mats
    ]
    return C.mlp_lipschitz(down, activation), activation in C.ONE_LIPSCHITZ_ACTIVATIONS


def jacobian_lipschitz(
    model: nn.Module,
    params: PyTree,
    x: Array,
    path: str,
    r: Array,
    n_points: int = 3,
) -> np.ndarray:
    """An ESTIMATE of ``L_s`` per sample from sampled Jacobians, for layers without a bound.

    For each sample, ``max_theta ||d z(s) / d u||_inf`` at the layer outputs
    ``u_theta = A_theta psi1(s) + b`` for ``n_points`` values of ``theta`` in ``[0, 1]``
    (``A`` = the layer in ``params``, ``A_theta = A - (1 - theta) R``); the Jacobian rows are
    logits, its columns every entry of the module output (all tokens). This is a local
    sample of the Lipschitz constant, not an upper bound: budgets built from it must use
    ``provable=False`` and are never certificates (transformer blocks, where no cheap
    provable bound exists).
    """
    view = mtree.select(params, include=[path])[path]
    module = tuple(view.layer.split("/"))
    _, psi = capture_inputs(model, params, x, [path])
    r_psi = np.asarray(psi[path]) @ np.asarray(r).T  # (batch, [tokens,] d_out)

    def logits_of(delta, xs):
        def inject(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if context.method_name == "__call__" and tuple(context.module.path) == module:
                out = out + delta.reshape(out.shape).astype(out.dtype)
            return out

        with nn.intercept_methods(inject):
            return model.apply({"params": params}, xs)[0]

    jac = jax.jit(jax.jacrev(logits_of))
    out = np.zeros(len(r_psi))
    for i in range(len(r_psi)):
        for theta in np.linspace(0.0, 1.0, n_points):
            j = np.asarray(jac(jnp.asarray(-(1.0 - theta) * r_psi[i : i + 1]), x[i : i + 1]))
            out[i] = max(out[i], float(np.max(np.sum(np.abs(j.reshape(j.shape[0], -1)), axis=1))))
    return out


def estimated_lipschitz_fn(
    model: nn.Module, x: Array, removed: Mapping[str, Array], n_points: int = 3
) -> LipschitzFn:
    """A ``lipschitz_fn`` for :func:`certify_network` returning ``(jacobian_lipschitz(...),
    False)``: reports built with it are labelled estimates (``hypotheses_hold`` is False)."""

    def fn(params: PyTree, path: str) -> tuple[np.ndarray, bool]:
        return jacobian_lipschitz(model, params, x, path, removed[path], n_points), False

    return fn


class LayerReport(NamedTuple):
    """One layer pruned alone in the dense network.

    Attributes:
      path: kernel path. budget: its :class:`~mpjax.certificates.bounds.PathBudget`.
      elastic: statement 4 (disjoint supports) verdict. frobenius: statement 5 verdict.
      margin: statement 2 at ``theta = 0``. path_check: statement 1 on measured CE.
      ce_change: measured ``CE(pruned layer) - CE(dense)``.
    """

    path: str
    budget: C.PathBudget
    elastic: C.ElasticNetCertificate
    frobenius: C.ElasticNetCertificate
    margin: C.MarginCertificate
    path_check: C.Check
    ce_change: float


class CertifyReport(NamedTuple):
    """Whole-network result of :func:`certify_network`.

    Attributes:
      layers: per-layer reports. telescoped: statement 8 budgets.
      margin: statement 2 with the telescoped ``eta``. objective_bound: bound on
      ``J(pruned) - J(dense)`` (``sum_k B^(k) - l2||R_k||^2 - l1||R_k||_1``).
      elastic_certified: ``objective_bound < 0`` with hypotheses holding.
      hypotheses_hold: provable ``L_s`` and ``S_k o R_k = 0`` for every layer.
      ce_dense, ce_pruned, acc_dense, acc_pruned: measured on the data.
      checks: statements 1/2 verified on the measured pruned network.
    """

    layers: tuple[LayerReport, ...]
    telescoped: C.TelescopedBudget
    margin: C.MarginCertificate
    objective_bound: float
    elastic_certified: bool
    hypotheses_hold: bool
    ce_dense: float
    ce_pruned: float
    acc_dense: float
    acc_pruned: float
    checks: tuple[C.Check, ...]


def _split(dense: PyTree, pruned: PyTree, paths: Sequence[str]) -> dict[str, tuple[Array, Array]]:
    vd, vp = mtree.select(dense, include=list(paths)), mtree.select(pruned, include=list(paths))
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
        a = mtree.to_matrix(mtree.flatten(dense)[p], vd[p])
        s = mtree.to_matrix(mtree.flatten(pruned)[p], vp[p])
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
      dense, pruned: parameter trees of the same architecture.
      x, labels: the sample set ``T`` (non-empty).
      layers: kernel paths, pruned in this order for the telescoped statement.
      lipschitz_fn: ``(params, path) -> (L, provable)`` in the given network, e.g.
        ``functools.partial(mlp_lipschitz_bound, activation="relu")``.
      l1, l2: elastic-net strengths of ``J``.
    """
    if len(x) == 0 or len(x) != len(labels):
        raise ValueError(
            f"data: need a non-empty sample set with one label per sample "
            f"(got {len(x)} inputs, {len(labels)} labels)."
        )
    if not layers:
        raise ValueError("--layer: name at least one weight-matrix path to certify.")
    parts = _split(dense, pruned, layers)
    views = mtree.select(dense, include=list(layers))
    apply = _apply_fn(model)
    z_dense, psi = capture_inputs(model, dense, x, layers)
    ce_dense = float(cross_entropy(z_dense, labels))
    reports = []
    for p in layers:
        s, r = parts[p]
        lip, provable = lipschitz_fn(dense, p)
        b = C.data_path_budget(r, psi[p], lip, provable)
        z1 = apply(mtree.replace_matrices(dense, {p: s}, views), x)
        ce1 = float(cross_entropy(z1, labels))
        reports.append(
            LayerReport(
                p,
                b,
                C.elastic_net_certificate(s, r, b, l1, l2),
                C.frobenius_certificate(s, r, b, l2),
                C.margin_certificate(z_dense, b, 0.0, labels),
                C.check_path_bound(jnp.zeros(1), jnp.array([ce1]), ce_dense, b),
                ce1 - ce_dense,
            )
        )
    steps, current = [], dense
    for p in layers:  # statement 8: budget of step k in the network N_{k-1}
        s, r = parts[p]
        _, psi_k = capture_inputs(model, current, x, layers)  # same compiled function
        lip, provable = lipschitz_fn(current, p)
        steps.append(C.data_path_budget(r, psi_k[p], lip, provable))
        current = mtree.replace_matrices(current, {p: s}, views)
    tele = C.telescope(steps)
    z_pruned = apply(current, x)
    margin = C.margin_certificate(
        z_dense, C.PathBudget(tele.total, tele.eta, None, None, tele.provable), 0.0, labels
    )
    reg = sum(float(rep.elastic.l2_term + rep.elastic.l1_term) for rep in reports)
    bound = float(tele.total - reg)
    hyp = bool(tele.provable and all(rep.elastic.disjoint for rep in reports))
    checks = (
        C.check_bound(
            "8: telescoped CE bound",
            tele.total,
            abs(float(cross_entropy(z_pruned, labels)) - ce_dense),
            1e-5,
        ),
        C.check_logit_drift(
            z_dense, z_pruned, C.PathBudget(tele.total, tele.eta, None, None, True)
        ),
        C.check_margins(z_dense, z_pruned, margin),
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


# ----------------------------------------------------------------------------- CLI


def _load(source: str) -> tuple[PyTree, dict, PyTree | None]:
    """``(params, meta, masks)`` of a checkpoint: ``models.convert.load_source`` when present,
    else an mpjax params directory (:func:`mpjax.checkpoint.restore_params`)."""
    try:
        from mpjax.models.convert import load_source
    except ImportError:
        load_source = None
    if load_source is not None:
        params, info = load_source(source)
        info = dict(info or {}) if isinstance(info, Mapping) else {}
        meta = {**info, **dict(info.get("meta") or {})}
        return params, meta, info.get("masks")
    from mpjax.checkpoint import restore_params

    params, masks, meta = restore_params(source)
    return params, dict(meta or {}), masks


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


def _data(spec: str, samples: int, normalize: str) -> tuple[np.ndarray, np.ndarray]:
    from mpjax import data

    if spec == "fmnist":
        images, labels = data.load_fashion_mnist("test")
    else:
        try:
            with np.load(spec) as f:
                images = f["x"] if "x" in f else f["images"]
                labels = f["y"] if "y" in f else f["labels"]
        except (OSError, KeyError) as err:
            raise ValueError(
                f"--data {spec}: expected 'fmnist' or an .npz with arrays x/images "
                f"and y/labels ({err})."
            ) from err
    images, labels = images[:samples], np.asarray(labels[:samples]).astype(np.int32)
    if len(images) == 0:
        raise ValueError(f"--data {spec}: no samples (use --samples >= 1 and a non-empty file).")
    if images.dtype == np.uint8:
        mean, std = data.STATS["fashion-mnist"]
        images = data.normalize(images, normalize, mean, std)
    return np.asarray(images, np.float32).reshape(len(images), -1), labels


def _apply_mask(dense: PyTree, pruned: PyTree, masks: PyTree, layers: Sequence[str]) -> None:
    """Check that removed weights (mask False) are zero in the pruned net: ``S o R = 0``."""
    flat_m, flat_p = mtree.flatten(masks), mtree.flatten(pruned)
    for p in layers:
        if p in flat_m:
            m = np.asarray(flat_m[p], bool)
            if m.shape != np.shape(flat_p[p]):
                raise ValueError(
                    f"--mask {p}: mask shape {m.shape} != weight shape {np.shape(flat_p[p])}."
                )
            if np.any(np.asarray(flat_p[p])[~m] != 0):
                raise ValueError(
                    f"--mask {p}: the pruned weights are nonzero where the mask removes "
                    "them, so the mask is not disjoint from S; pass the mask of this "
                    "pruned checkpoint."
                )


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mpjax certify",
        description=(
            "Data-path certificates (P26) of replacing layers of DENSE by those of PRUNED."
        ),
    )
    ap.add_argument("dense", help="dense checkpoint (mpjax params dir or any load_source source)")
    ap.add_argument("pruned", help="pruned checkpoint of the same architecture")
    ap.add_argument("--mask", help="checkpoint dir whose masks (True = kept) define the split")
    ap.add_argument("--data", default="fmnist", help="'fmnist' (test split) or an .npz with x, y")
    ap.add_argument("--layer", nargs="+", help="kernel paths (default: every changed matrix)")
    ap.add_argument("--l1", type=float, default=0.0, help="l1 strength of J")
    ap.add_argument("--l2", type=float, default=0.0, help="l2 strength of J")
    ap.add_argument("--samples", type=int, default=1000, help="size of the sample set T")
    ap.add_argument("--activation", help="MLP activation (default: checkpoint meta, else relu)")
    ap.add_argument("--normalize", help="'unit' or 'standard' pixels (default: meta, else unit)")
    return ap


def main_certify(argv: list[str] | None = None) -> int:
    """``mpjax certify DENSE PRUNED [--mask DIR] --data fmnist|PATH --layer PATH ...``.

    Prints ``B_T`` per layer, the elastic-net verdicts, the telescoped budget, the share of
    samples whose label is certified preserved, and whether each statement's hypotheses hold.
    """
    args = _parser().parse_args(argv)
    dense, meta, _ = _load(args.dense)
    pruned, _, masks = _load(args.pruned)
    if args.mask:
        masks = _load(args.mask)[2]
        if masks is None:
            raise ValueError(f"--mask {args.mask}: the checkpoint holds no masks.")
    activation = args.activation or meta.get("activation", "relu")
    model = mlp_from_params(dense, activation)
    mlp_from_params(pruned, activation)
    changed = [
        p
        for p, w in mtree.matrices(dense).items()
        if not np.array_equal(np.asarray(w), np.asarray(mtree.matrices(pruned).get(p, w)))
    ]
    layers = args.layer or changed
    if masks is not None:
        _apply_mask(dense, pruned, masks, layers)
    x, y = _data(args.data, args.samples, args.normalize or meta.get("normalize", "unit"))
    lip = lambda params, path: mlp_lipschitz_bound(params, path, activation)  # noqa: E731
    rep = certify_network(model, dense, pruned, x, y, layers, lip, args.l1, args.l2)
    print(format_report(rep, args.l1, args.l2))
    return 0


def format_report(rep: CertifyReport, l1: float, l2: float) -> str:
    """A plain-text table of a :class:`CertifyReport`."""
    lines = [
        f"{'layer':<22}{'B_T':>11}{'l2|R|^2+l1|R|_1':>18}{'elastic-net':>13}{'hyp.':>6}"
        f"{'certified share':>17}{'dCE (meas.)':>13}"
    ]
    for r in rep.layers:
        e = r.elastic
        lines.append(
            f"{r.path:<22}{float(r.budget.budget):11.4g}{float(e.l2_term + e.l1_term):18.4g}"
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
