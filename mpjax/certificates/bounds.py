"""Pruning certificates of [P26] on plain matrices: data-path budgets and the statements built on them.

Setting. A layer ``A`` (the ``(n, m) = (d_out, d_in)`` matrix view) sits inside a network
whose logits are ``z_A(s) = psi2(A psi1(s))``; ``psi1(s)`` is the layer input on sample ``s``
(shape ``(m,)``, or ``(tokens, m)`` for token models) and ``psi2`` everything after it. The
layer is split ``A = S + R`` (``S`` kept, ``R`` removed) and moved along the path
``A_theta = S + theta R``: ``theta = 1`` is the dense layer, ``theta = 0`` the pruned one.

``L_s`` bounds the ``l_inf -> l_inf`` Lipschitz constant of ``psi2`` on the segment
``{A_theta psi1(s)}``. Then ``||z_theta(s) - z_1(s)||_inf <= eta_s`` with
``eta_s = (1 - theta) L_s ||R psi1(s)||_inf``.

Why the factor 2. ``ce(z, y) = logsumexp(z) - z_y`` has gradient ``softmax(z) - e_y`` whose
l1 norm is ``(1 - p_y) + sum_{j != y} p_j = 2 (1 - p_y) <= 2``. By the mean-value theorem
``|ce(z) - ce(z')| <= 2 ||z - z'||_inf`` (l1 is the dual of l_inf). CE is the **mean** over
``T``, so ``|CE(A_theta) - CE(A_1)| <= (1/|T|) sum_s 2 eta_s = (1 - theta) B_T(R)`` with the
data-path budget

.. math:: B_T(R) = \\frac{2}{|T|} \\sum_{s \\in T} L_s \\, \\|R \\psi_1(s)\\|_\\infty .

Statements (numbering of SPEC.md Sec. 5): 1 CE path bound, 2 margins, 3 zero budget,
4 elastic-net mask certificate, 5 additive Frobenius, 6 prune-restore, 7 one-sided
stationarity, 8 multi-layer telescoping, 9 Gaussian sufficient condition, 10 entrywise
threshold support recovery. Each result carries ``hypotheses_hold``; a budget built from a
sampled Jacobian (no provable ``L_s``) has ``provable=False`` and never certifies anything.
Network-level glue (capturing ``psi1`` from Flax models, MLP Lipschitz bounds, the CLI)
lives in :mod:`mpjax.certificates.network`.

References:
  [P26] Berlyand, Bourdais, Owhadi, Shmalo et al., "Pruning DNNs via the Marchenko-Pastur
  Distribution" (arXiv 2606.02608), Sec. "Certificates" (Thm. data-path budget, corollaries).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mpjax.certificates.objectives import predicted_margin, true_margin

Array = Any

#: Coordinatewise activations that are 1-Lipschitz (so ``||W||_inf`` products bound ``L_s``).
ONE_LIPSCHITZ_ACTIVATIONS = ("relu", "abs", "identity", "tanh", "leaky_relu")


def _f64(a: Array) -> np.ndarray:
    return np.asarray(a, np.float64)


def _sq(a: Array, w: Array | None = None) -> float:
    """``sum w a^2`` in float64 (certificate arithmetic is done on the host, in numpy)."""
    sq = np.square(_f64(a))
    return float(np.sum(sq if w is None else _f64(w) * sq))


def _l1(a: Array, w: Array | None = None) -> float:
    ab = np.abs(_f64(a))
    return float(np.sum(ab if w is None else _f64(w) * ab))


def _disjoint(*mats: Array) -> bool:
    supports = [_f64(m) != 0 for m in mats]
    return all(not np.any(a & b) for i, a in enumerate(supports) for b in supports[i + 1 :])


def matrix_inf_norm(w: Array) -> Array:
    """``||W||_inf = max_i sum_j |W_ij|`` of a ``(d_out, d_in)`` matrix (l_inf operator norm)."""
    return jnp.max(jnp.sum(jnp.abs(jnp.asarray(w)), axis=1))


def mlp_lipschitz(downstream: Sequence[Array], activation: str = "relu") -> float:
    """Provable ``L_s`` for ``psi2 = W_k o act o ... o W_{l+1} o act`` (biases allowed).

    ``L_s <= prod_k ||W_k||_inf`` because coordinatewise 1-Lipschitz activations do not
    increase ``||.||_inf`` differences. With no downstream matrix (the target is the last
    layer, ``psi2 = + bias``) the value 1 is exact; for an affine ``psi2 = W u + b`` the value
    ``||W||_inf`` is the exact ``l_inf -> l_inf`` constant.

    Raises:
      ValueError: if ``activation`` is not known to be 1-Lipschitz (use an estimate instead).
    """
    if activation not in ONE_LIPSCHITZ_ACTIVATIONS:
        raise ValueError(
            f"activation={activation!r}: no provable l_inf bound; use relu/abs/identity/tanh/"
            "leaky_relu or jacobian_lipschitz_estimate (an estimate, not a certificate)."
        )
    norms = [float(np.max(np.sum(np.abs(_f64(w)), axis=1))) for w in downstream]
    return float(np.prod(norms)) if norms else 1.0


class PathBudget(NamedTuple):
    """Data-path budget ``B_T(R)`` and its per-sample pieces.

    Attributes:
      budget: ``B_T(R) = (2/|T|) sum_s L_s ||R psi1(s)||_inf``.
      eta: ``L_s ||R psi1(s)||_inf`` per sample (the logit drift bound at ``theta = 0``).
      lipschitz: ``L_s`` per sample.
      residual_inf: ``||R psi1(s)||_inf`` per sample (max over tokens for token models).
      provable: whether ``L_s`` is a proven bound (False for sampled-Jacobian estimates).
    """

    budget: Array
    eta: Array
    lipschitz: Array
    residual_inf: Array
    provable: bool


def _check_layer(r: Array, psi1: Array, name: str = "R") -> None:
    if jnp.ndim(r) != 2:
        raise ValueError(f"{name}: expected a (d_out, d_in) matrix, got shape {jnp.shape(r)}.")
    if jnp.ndim(psi1) < 2 or jnp.shape(psi1)[0] == 0:
        raise ValueError(
            f"psi1: expected a non-empty (samples, [tokens,] d_in) array, got {jnp.shape(psi1)}."
        )
    if jnp.shape(psi1)[-1] != jnp.shape(r)[1]:
        raise ValueError(
            f"psi1: last axis {jnp.shape(psi1)[-1]} != d_in={jnp.shape(r)[1]} of {name}; "
            "pass the layer input of this layer."
        )


def residual_inf_norms(r: Array, psi1: Array) -> Array:
    """``||R psi1(s)||_inf`` per sample (max over output rows and, if present, tokens)."""
    _check_layer(r, psi1)
    return _residual_inf(jnp.asarray(r), jnp.asarray(psi1))


@jax.jit
def _residual_inf(r: Array, psi1: Array) -> Array:
    out = jnp.abs(psi1 @ r.T)
    return jnp.max(out.reshape(out.shape[0], -1), axis=1)


def data_path_budget(
    r: Array, psi1: Array, lipschitz: Array | float, provable: bool = True
) -> PathBudget:
    """``B_T(R)`` for removed part ``r`` with layer inputs ``psi1`` and bounds ``L_s``.

    Args:
      r: removed part ``R`` (``(d_out, d_in)``).
      psi1: layer inputs ``(|T|, d_in)`` or ``(|T|, tokens, d_in)``.
      lipschitz: ``L_s``, a scalar or one value per sample.
      provable: False when ``lipschitz`` is an estimate; results then never certify.

    Examples:
      >>> import jax.numpy as jnp
      >>> float(data_path_budget(jnp.eye(2), jnp.array([[1.0, -3.0]]), 0.5).budget)
      3.0
    """
    res = _f64(residual_inf_norms(r, psi1))
    lip = np.broadcast_to(_f64(lipschitz), res.shape)
    eta = lip * res
    return PathBudget(float(2.0 * np.mean(eta)), eta, lip, res, bool(provable))


def path_bound(theta: Array | float, budget: PathBudget) -> Array:
    """Statement 1: ``|CE(A_theta) - CE(A_1)| <= (1 - theta) B_T(R)`` (right-hand side)."""
    return (1.0 - _f64(theta)) * budget.budget


class MarginCertificate(NamedTuple):
    """Statement 2: which samples keep their predicted label along the path.

    Attributes:
      eta: ``(1 - theta) L_s ||R psi1(s)||_inf`` per sample.
      margin: dense predicted margin ``z_top - max_{j != top} z_j``.
      certified: ``margin > 2 eta`` (label provably unchanged for every ``theta' >= theta``).
      share: mean of ``certified``.
      accuracy_change_bound: share of samples with ``|true margin| <= 2 eta`` (NaN without
        labels); ``|acc(A_theta) - acc(A_1)|`` is at most this.
      hypotheses_hold: the budget is provable.
    """

    eta: Array
    margin: Array
    certified: Array
    share: Array
    accuracy_change_bound: Array
    hypotheses_hold: bool


def margin_certificate(
    logits: Array, budget: PathBudget, theta: float = 0.0, labels: Array | None = None
) -> MarginCertificate:
    """Samples whose label provably survives moving from ``A_1`` (dense logits) to ``A_theta``.

    Every logit moves by at most ``eta_s`` so each gap ``z_top - z_j`` shrinks by at most
    ``2 eta_s``. A tie (margin 0) is never certified.
    """
    eta = (1.0 - theta) * _f64(budget.eta)
    margin = _f64(predicted_margin(logits))
    certified = margin > 2.0 * eta
    if labels is None:
        acc_bound = float("nan")
    else:
        acc_bound = float(np.mean(np.abs(_f64(true_margin(logits, labels))) <= 2.0 * eta))
    return MarginCertificate(
        eta, margin, certified, float(np.mean(certified)), acc_bound, budget.provable
    )


def is_zero_budget(budget: PathBudget) -> bool:
    """Statement 3: ``R psi1(s) = 0`` on every sample -> logits, CE, accuracy unchanged."""
    return bool(np.all(_f64(budget.residual_inf) == 0))


class ElasticNetCertificate(NamedTuple):
    """Statements 4 and 5: the (elastic-net or additive-Frobenius) mask certificate.

    Attributes:
      budget: ``B_T(R)``.
      l2_term: ``l2 ||R||_F^2`` (weighted if weights were given).
      l1_term: ``l1 ||R||_1`` (0 for the additive-Frobenius form).
      cross_term: ``2 l2 <S, R>`` (0 under the disjoint-support hypothesis).
      slack: ``l2_term + l1_term + cross_term - budget``; removal certified iff ``> 0``.
      certified: ``slack > 0`` and the hypotheses hold.
      disjoint: ``S o R = 0``.
      hypotheses_hold: provable budget (and disjoint supports for statement 4).
    """

    budget: Array
    l2_term: Array
    l1_term: Array
    cross_term: Array
    slack: Array
    certified: bool
    disjoint: bool
    hypotheses_hold: bool

    def bound(self, theta: Array | float) -> Array:
        """Upper bound of ``J(A_theta) - J(A_1)``:
        ``(1-theta) B_T - (1-theta^2) l2||R||^2 - (1-theta) (l1||R||_1 + 2 l2 <S,R>)``."""
        t = _f64(theta)
        return (
            (1 - t) * self.budget
            - (1 - t**2) * self.l2_term
            - (1 - t) * (self.l1_term + self.cross_term)
        )


def _certificate(budget, l2_term, l1_term, cross, disjoint, hyp) -> ElasticNetCertificate:
    slack = l2_term + l1_term + cross - budget.budget
    ok = bool(hyp and budget.provable)
    return ElasticNetCertificate(
        budget.budget, l2_term, l1_term, cross, slack, bool(ok and slack > 0), disjoint, ok
    )


def elastic_net_certificate(
    s: Array,
    r: Array,
    budget: PathBudget,
    l1: float,
    l2: float,
    w1: Array | None = None,
    w2: Array | None = None,
) -> ElasticNetCertificate:
    """Statement 4 for ``J = CE + l2 ||A||_F^2 + l1 ||A||_1`` and a mask split ``S o R = 0``.

    With disjoint supports ``||A_theta||_F^2 = ||S||^2 + theta^2 ||R||^2`` and
    ``||A_theta||_1 = ||S||_1 + theta ||R||_1``, so with statement 1
    ``J(A_theta) - J(A_1) <= (1-theta) B_T - l2 (1-theta^2) ||R||_F^2 - l1 (1-theta) ||R||_1``;
    removal (``theta = 0``) lowers ``J`` when ``B_T(R) < l2 ||R||_F^2 + l1 ||R||_1``.
    Per-entry weights ``w2``/``w1`` give the weighted norms ``sum w R^2``, ``sum w |R|``.
    """
    if jnp.shape(s) != jnp.shape(r):
        raise ValueError(f"S and R: shapes {jnp.shape(s)} and {jnp.shape(r)} differ.")
    disjoint = _disjoint(s, r)
    return _certificate(budget, l2 * _sq(r, w2), l1 * _l1(r, w1), 0.0, disjoint, disjoint)


def frobenius_certificate(
    s: Array, r: Array, budget: PathBudget, l2: float
) -> ElasticNetCertificate:
    """Statement 5 for ``J2 = CE + l2 ||A||_F^2`` with any split ``A = S + R`` (no mask needed):
    ``J2(A_theta) - J2(A_1) <= (1-theta) B_T - l2 (1-theta^2) ||R||^2 - 2 l2 (1-theta) <S, R>``."""
    if jnp.shape(s) != jnp.shape(r):
        raise ValueError(f"S and R: shapes {jnp.shape(s)} and {jnp.shape(r)} differ.")
    cross = 2.0 * l2 * float(np.vdot(_f64(s), _f64(r)))
    return _certificate(budget, l2 * _sq(r), 0.0, cross, _disjoint(s, r), True)


class PruneRestore(NamedTuple):
    """Statement 6 for ``A = S + Q + P`` (pairwise disjoint supports).

    Attributes:
      bound_restore: bound on ``J(S + Q) - J(A)``: ``B_T(P) - l2||P||^2 - l1||P||_1``.
      bound_prune_all: bound on ``J(S) - J(A)``: ``B_T(Q+P) - l2||Q+P||^2 - l1||Q+P||_1``.
      restore_helps: ``B_T(Q+P) - B_T(P) > l2||Q||^2 + l1||Q||_1`` (the restore bound is lower).
      hypotheses_hold: disjoint supports and provable budgets.
    """

    bound_restore: Array
    bound_prune_all: Array
    restore_helps: bool
    hypotheses_hold: bool


def prune_restore(
    s: Array,
    q: Array,
    p: Array,
    psi1: Array,
    lipschitz: Array | float,
    l1: float,
    l2: float,
    provable: bool = True,
) -> PruneRestore:
    """Statement 6: is restoring ``Q`` (keeping ``S + Q``) certified-better than pruning ``Q + P``?"""
    s, q, p = (_f64(a) for a in (s, q, p))
    disjoint = _disjoint(s, q, p)
    b_p = data_path_budget(p, psi1, lipschitz, provable).budget
    b_qp = data_path_budget(q + p, psi1, lipschitz, provable).budget
    restore = b_p - l2 * _sq(p) - l1 * _l1(p)
    prune_all = b_qp - l2 * _sq(q + p) - l1 * _l1(q + p)
    helps = bool(b_qp - b_p > l2 * _sq(q) + l1 * _l1(q))
    return PruneRestore(restore, prune_all, helps, bool(disjoint and provable))


class Stationarity(NamedTuple):
    """Statement 7: ``2 l2 ||R||^2 + l1 ||R||_1 <= B_T + eps`` at an eps-stationary point.

    Attributes:
      eps: the one-sided slope ``-liminf [J(A_{1-h}) - J(A_1)]/h`` (or the given eps).
      lhs: ``2 l2 ||R||_F^2 + l1 ||R||_1``.
      rhs: ``B_T(R) + eps``.
      holds: ``lhs <= rhs``.
      hypotheses_hold: provable budget.
    """

    eps: Array
    lhs: Array
    rhs: Array
    holds: bool
    hypotheses_hold: bool


def stationarity_eps(grad_ce: Array, r: Array, l1: float, l2: float) -> Array:
    """``-d/dh J(A_{1-h})|_{h=0+} = <grad CE(A), R> + 2 l2 ||R||^2 + l1 ||R||_1`` (``S o R = 0``)."""
    return float(np.vdot(_f64(grad_ce), _f64(r))) + 2 * l2 * _sq(r) + l1 * _l1(r)


def stationarity_bound(
    r: Array, budget: PathBudget, l1: float, l2: float, eps: Array | float
) -> Stationarity:
    """Statement 7. Dividing statement 4 at ``theta = 1 - h`` by ``h`` and letting ``h -> 0``:
    ``-eps <= B_T - 2 l2 ||R||^2 - l1 ||R||_1``."""
    lhs = 2 * l2 * _sq(r) + l1 * _l1(r)
    rhs = budget.budget + float(eps)
    return Stationarity(float(eps), lhs, rhs, bool(lhs <= rhs * (1 + 1e-6) + 1e-9), budget.provable)


class TelescopedBudget(NamedTuple):
    """Statement 8: layers pruned one after another, each budget computed in the network
    where the earlier layers are already pruned; ``|CE(pruned) - CE(dense)| <= total``.

    Attributes:
      total: ``sum_k B_T^(k)``.
      eta: ``sum_k eta_s^(k)`` per sample (logit drift bound of the whole sequence).
      steps: the per-step budgets.
      provable: all steps provable.
    """

    total: Array
    eta: Array
    steps: tuple[PathBudget, ...]
    provable: bool


def telescope(steps: Sequence[PathBudget]) -> TelescopedBudget:
    """Sum per-step budgets (statement 8). ``steps`` must share the sample set ``T``."""
    if not steps:
        raise ValueError("steps: need at least one per-layer PathBudget.")
    total = sum(b.budget for b in steps)
    eta = sum(b.eta for b in steps)
    return TelescopedBudget(total, eta, tuple(steps), all(b.provable for b in steps))


def gaussian_budget_bound(
    psi1: Array, lipschitz: Array | float, g: float, n: int, delta: float
) -> Array:
    """Statement 9: for ``R`` (``n x m``) iid ``N(0, g/n)`` independent of the data, with
    probability ``>= 1 - delta``, ``B_T(R) <= (2/|T|) sum_s L_s ||v_s||_2 sqrt((2g/n) log(2 n K / delta))``
    where ``v_s = psi1(s)`` and ``K`` counts the vectors ``v`` (``|T|`` times tokens).

    Each ``(R v)_i ~ N(0, g ||v||^2 / n)`` and ``P(|X| > t) <= 2 exp(-t^2 / 2 var)``; a union bound
    over the ``n K`` coordinates gives the threshold. Token models use the largest token norm.
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta={delta}: must lie in (0, 1).")
    x = _f64(psi1)
    count = int(np.prod(x.shape[:-1]))
    norms = np.linalg.norm(x, axis=-1).reshape(x.shape[0], -1).max(axis=1)
    lip = np.broadcast_to(_f64(lipschitz), norms.shape)
    scale = math.sqrt(2.0 * g / n * math.log(2.0 * n * count / delta))
    return float(2.0 * np.mean(lip * norms) * scale)


def gaussian_g_from_edge(sigma_plus: float, n: int, m: int) -> float:
    """MP-edge form: ``g`` from the bulk edge ``sigma_plus = sqrt(g) (1 + sqrt(m/n))`` of an
    ``n x m`` matrix with iid ``N(0, g/n)`` entries (singular-value scale)."""
    return float(sigma_plus / (1.0 + math.sqrt(m / n))) ** 2


def support_threshold(
    g: float, shape: tuple[int, int], delta: float, n: int | None = None
) -> float:
    """Statement 10: ``t = sqrt(2 g log(2 N M / delta) / N)`` for an ``N x M`` matrix ``S + R``,
    ``R`` iid ``N(0, g/N)``. With probability ``>= 1 - delta`` every ``|R_ij| <= t``: thresholding
    ``|W_ij| > t`` has no false positive and keeps every ``|S_ij| > 2 t``.

    ``n`` is the variance denominator ``N`` (default ``shape[0]``).
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta={delta}: must lie in (0, 1).")
    rows, cols = shape
    n = rows if n is None else n
    return math.sqrt(2.0 * g * math.log(2.0 * rows * cols / delta) / n)


def threshold_support(
    w: Array, g: float, delta: float, n: int | None = None
) -> tuple[np.ndarray, float]:
    """Statement 10 applied: ``(|W| > t, t)`` with ``t = support_threshold(g, W.shape, delta, n)``.

    Examples:
      >>> import numpy as np
      >>> mask, t = threshold_support(np.diag([10.0, 0.01]), g=1.0, delta=0.1)
      >>> mask.tolist(), round(t, 3)
      ([[True, False], [False, False]], 2.093)
    """
    if np.ndim(w) != 2:
        raise ValueError(f"w: expected a (d_out, d_in) matrix, got shape {np.shape(w)}.")
    t = support_threshold(g, tuple(np.shape(w)), delta, n)
    return np.abs(_f64(w)) > t, t


def jacobian_lipschitz_estimate(
    psi2: Callable[[Array], Array], u_dense: Array, u_pruned: Array, n_points: int = 3
) -> Array:
    """An ESTIMATE (not a bound) of ``L_s``: ``max_theta ||J_psi2(u_theta)||_inf`` at ``n_points``
    points of the segment ``u_theta = u_pruned + theta (u_dense - u_pruned)``, per sample.

    ``psi2`` maps one sample's pre-activation ``u`` (any shape) to its logits ``(C,)``. Use the
    result with ``data_path_budget(..., provable=False)``: it is never a certificate.
    """

    def one(ud, up):
        def at(theta):
            jac = jax.jacfwd(psi2)(up + theta * (ud - up))
            return matrix_inf_norm(jac.reshape(jac.shape[0], -1))

        return jnp.max(jax.vmap(at)(jnp.linspace(0.0, 1.0, n_points)))

    return jax.vmap(one)(jnp.asarray(u_dense), jnp.asarray(u_pruned))


class Check(NamedTuple):
    """Outcome of comparing measured quantities with a certified bound.

    Attributes:
      statement: which statement was checked.
      holds: every measured value respects its bound (within ``tol``).
      worst_slack: ``min(bound - measured)``; negative means a violation.
      n_checked: number of (sample / theta) comparisons.
    """

    statement: str
    holds: bool
    worst_slack: float
    n_checked: int


def check_bound(statement: str, bound: Array, measured: Array, tol: float = 1e-5) -> Check:
    """Generic check: ``measured <= bound`` entrywise within relative tolerance ``tol``."""
    bound, measured = np.asarray(bound, np.float64), np.asarray(measured, np.float64)
    slack = bound - measured
    scale = tol * (1.0 + np.abs(measured))
    return Check(statement, bool(np.all(slack >= -scale)), float(np.min(slack)), int(slack.size))


def check_path_bound(
    thetas: Array, ce_theta: Array, ce_one: float, budget: PathBudget, tol: float = 1e-5
) -> Check:
    """Statement 1 on measured ``CE(A_theta)``: ``|CE(A_theta) - CE(A_1)| <= (1-theta) B_T``."""
    return check_bound(
        "1: CE path bound",
        path_bound(thetas, budget),
        np.abs(_f64(ce_theta) - ce_one),
        tol,
    )


def check_logit_drift(
    logits_one: Array,
    logits_theta: Array,
    budget: PathBudget,
    theta: float = 0.0,
    tol: float = 1e-5,
) -> Check:
    """Per sample ``||z_theta(s) - z_1(s)||_inf <= (1-theta) L_s ||R psi1(s)||_inf``."""
    drift = np.max(np.abs(_f64(logits_theta) - _f64(logits_one)), axis=1)
    return check_bound("logit drift <= eta_s", (1.0 - theta) * budget.eta, drift, tol)


def check_margins(logits_one: Array, logits_theta: Array, cert: MarginCertificate) -> Check:
    """Statement 2: no certified sample changes its predicted label."""
    changed = np.argmax(_f64(logits_theta), 1) != np.argmax(_f64(logits_one), 1)
    bad = int(np.sum(changed & cert.certified))
    return Check("2: certified labels kept", bool(bad == 0), float(-bad), int(cert.certified.size))


def check_objective_bound(
    thetas: Array, j_theta: Array, j_one: float, cert: ElasticNetCertificate, tol: float = 1e-5
) -> Check:
    """Statements 4/5 on measured ``J(A_theta)``: ``J(A_theta) - J(A_1) <= cert.bound(theta)``."""
    return check_bound(
        "4/5: objective path bound",
        cert.bound(thetas),
        _f64(j_theta) - j_one,
        tol,
    )


def main_certify(argv: list[str] | None = None) -> int:
    """``mpjax certify``: see :func:`mpjax.certificates.network.main_certify` (network glue lives there)."""
    from mpjax.certificates.network import (
        main_certify as _main,  # lazy: mpjax.certificates.network imports this module
    )

    return _main(argv)
