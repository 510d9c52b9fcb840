"""The data-path bound ``B_T(R)`` of [P26]: norms, Lipschitz constants, its Gaussian form.

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
data-path bound

.. math:: B_T(R) = \\frac{2}{|T|} \\sum_{s \\in T} L_s \\, \\|R \\psi_1(s)\\|_\\infty .

This module holds the bound itself (statement 1, the zero bound of statement 3, the
Gaussian form of statement 9) and the Lipschitz constants ``L_s`` it needs; the statements
built on it are in :mod:`mpjax.certificates.statements`, their numerical checks in
:mod:`mpjax.certificates.checks`. A bound built from a sampled Jacobian (no provable
``L_s``) has ``provable=False`` and never certifies anything. The statements are numbered as
in ``docs/method/certificates.md``.

References:
  [P26] Berlyand, Bourdais, Owhadi, Shmalo et al., "Pruning DNNs via the Marchenko-Pastur
  Distribution" (arXiv 2606.02608), Sec. "Certificates" (Thm. data-path bound, corollaries).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mpjax.certificates._arithmetic import f64

Array = Any

__all__ = [
    "ONE_LIPSCHITZ_ACTIVATIONS",
    "PathBound",
    "matrix_inf_norm",
    "mlp_lipschitz",
    "jacobian_lipschitz_estimate",
    "residual_inf_norms",
    "data_path_bound",
    "path_bound",
    "is_zero_bound",
    "gaussian_path_bound",
    "gaussian_drift_bound",
    "gaussian_g_from_edge",
]

#: Coordinatewise activations that are 1-Lipschitz (so ``||W||_inf`` products bound ``L_s``).
ONE_LIPSCHITZ_ACTIVATIONS = ("relu", "abs", "identity", "tanh", "leaky_relu")


def matrix_inf_norm(w: Array) -> Array:
    """``||W||_inf = max_i sum_j |W_ij|`` of a ``(d_out, d_in)`` matrix (l_inf operator norm).

    Examples:
      >>> import jax.numpy as jnp
      >>> float(matrix_inf_norm(jnp.array([[1.0, -2.0], [0.5, 0.5]])))
      3.0
    """
    return jnp.max(jnp.sum(jnp.abs(jnp.asarray(w)), axis=1))


def mlp_lipschitz(downstream: Sequence[Array], activation: str = "relu") -> float:
    """Provable ``L_s`` for ``psi2 = W_k o act o ... o W_{l+1} o act`` (biases allowed).

    ``L_s <= prod_k ||W_k||_inf`` because coordinatewise 1-Lipschitz activations do not
    increase ``||.||_inf`` differences. With no downstream matrix (the target is the last
    layer, ``psi2 = + bias``) the value 1 is exact; for an affine ``psi2 = W u + b`` the value
    ``||W||_inf`` is the exact ``l_inf -> l_inf`` constant.

    Args:
      downstream: the ``(d_out, d_in)`` matrices after the target layer, in order.
      activation: the activation between them (one of :data:`ONE_LIPSCHITZ_ACTIVATIONS`).

    Returns:
      ``prod_k ||W_k||_inf`` (1.0 for an empty ``downstream``).

    Raises:
      ValueError: if ``activation`` is not known to be 1-Lipschitz (use an estimate instead).
    """
    if activation not in ONE_LIPSCHITZ_ACTIVATIONS:
        raise ValueError(
            f"activation={activation!r}: no provable l_inf bound; use relu/abs/identity/tanh/"
            "leaky_relu or jacobian_lipschitz_estimate (an estimate, not a certificate)."
        )
    norms = [float(np.max(np.sum(np.abs(f64(w)), axis=1))) for w in downstream]
    return float(np.prod(norms)) if norms else 1.0


def jacobian_lipschitz_estimate(
    psi2: Callable[[Array], Array], u_dense: Array, u_pruned: Array, n_points: int = 3
) -> Array:
    """An ESTIMATE (not a bound) of ``L_s``: ``max_theta ||J_psi2(u_theta)||_inf`` at ``n_points``
    points of the segment ``u_theta = u_pruned + theta (u_dense - u_pruned)``, per sample.

    ``psi2`` maps one sample's pre-activation ``u`` (any shape) to its logits ``(C,)``. Use the
    result with ``data_path_bound(..., provable=False)``: it is never a certificate.
    """

    def one(ud, up):
        def at(theta):
            jac = jax.jacfwd(psi2)(up + theta * (ud - up))
            return matrix_inf_norm(jac.reshape(jac.shape[0], -1))

        return jnp.max(jax.vmap(at)(jnp.linspace(0.0, 1.0, n_points)))

    return jax.vmap(one)(jnp.asarray(u_dense), jnp.asarray(u_pruned))


class PathBound(NamedTuple):
    """Data-path bound ``B_T(R)`` and its per-sample pieces.

    Attributes:
      bound: ``B_T(R) = (2/|T|) sum_s L_s ||R psi1(s)||_inf``.
      eta: ``L_s ||R psi1(s)||_inf`` per sample (the logit drift bound at ``theta = 0``).
      lipschitz: ``L_s`` per sample.
      residual_inf: ``||R psi1(s)||_inf`` per sample (max over tokens for token models).
      provable: whether ``L_s`` is a proven bound (False for sampled-Jacobian estimates).
    """

    bound: Array
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
    """``||R psi1(s)||_inf`` per sample (max over output rows and, if present, tokens).

    Computed in numpy float64 whatever the dtype of ``r`` and ``psi1`` (a float32 product
    can round a small ``R psi1(s)`` to zero or lose digits the certificates compare).

    Raises:
      ValueError: if ``r`` is not a matrix or ``psi1`` is empty or of another ``d_in``.
    """
    _check_layer(r, psi1)
    out = np.abs(f64(psi1) @ f64(r).T)
    return np.max(out.reshape(out.shape[0], -1), axis=1)


def data_path_bound(
    r: Array, psi1: Array, lipschitz: Array | float, provable: bool = True
) -> PathBound:
    """``B_T(R)`` for removed part ``r`` with layer inputs ``psi1`` and bounds ``L_s``.

    Args:
      r: removed part ``R`` (``(d_out, d_in)``).
      psi1: layer inputs ``(|T|, d_in)`` or ``(|T|, tokens, d_in)``.
      lipschitz: ``L_s``, a scalar or one value per sample.
      provable: False when ``lipschitz`` is an estimate; results then never certify.

    Returns:
      The :class:`PathBound` (float64 numpy pieces).

    Raises:
      ValueError: if the shapes of ``r`` and ``psi1`` do not fit (see
        :func:`residual_inf_norms`).

    Examples:
      >>> import jax.numpy as jnp
      >>> float(data_path_bound(jnp.eye(2), jnp.array([[1.0, -3.0]]), 0.5).bound)
      3.0
    """
    res = f64(residual_inf_norms(r, psi1))
    lip = np.broadcast_to(f64(lipschitz), res.shape)
    eta = lip * res
    return PathBound(float(2.0 * np.mean(eta)), eta, lip, res, bool(provable))


def path_bound(theta: Array | float, bound: PathBound) -> Array:
    """Statement 1: ``|CE(A_theta) - CE(A_1)| <= (1 - theta) B_T(R)`` (the right-hand side).

    Args:
      theta: a point (or points) of the path, ``theta = 1`` being the dense layer.
      bound: the :class:`PathBound` of the removed part ``R``.
    """
    return (1.0 - f64(theta)) * bound.bound


def is_zero_bound(bound: PathBound) -> bool:
    """Statement 3: ``R psi1(s) = 0`` on every sample -> logits, CE, accuracy unchanged."""
    return bool(np.all(f64(bound.residual_inf) == 0))


def gaussian_path_bound(
    psi1: Array, lipschitz: Array | float, g: float, n: int, delta: float
) -> Array:
    """Statement 9: for ``R`` (``n x m``) iid ``N(0, g/n)`` independent of the data, with
    probability ``>= 1 - delta``, ``B_T(R) <= (2/|T|) sum_s L_s ||v_s||_2 sqrt((2g/n) log(2 n K / delta))``
    where ``v_s = psi1(s)`` and ``K`` counts the vectors ``v`` (``|T|`` times tokens).

    Each ``(R v)_i ~ N(0, g ||v||^2 / n)`` and ``P(|X| > t) <= 2 exp(-t^2 / 2 var)``; a union bound
    over the ``n K`` coordinates gives the threshold. Token models use the largest token norm.

    Raises:
      ValueError: if ``delta`` is not in ``(0, 1)``.
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta={delta}: must lie in (0, 1).")
    x = f64(psi1)
    count = int(np.prod(x.shape[:-1]))
    norms = np.linalg.norm(x, axis=-1).reshape(x.shape[0], -1).max(axis=1)
    lip = np.broadcast_to(f64(lipschitz), norms.shape)
    scale = math.sqrt(2.0 * g / n * math.log(2.0 * n * count / delta))
    return float(2.0 * np.mean(lip * norms) * scale)


def gaussian_drift_bound(
    psi1: Array, lipschitz: Array | float, g: float, n: int, delta: float
) -> np.ndarray:
    """Per-sample form of statement 9: for ``R`` (``n x m``) iid ``N(0, g/n)`` independent of
    the data, for each sample ``s``, with probability ``>= 1 - delta``,
    ``||z_{S+R}(s) - z_S(s)||_inf <= L_s ||R psi1(s)||_inf <= L_s ||v_s||_2 sqrt((2g/n) log(2 n K_s / delta))``
    (``K_s`` the tokens of ``s``, 1 for vectors). With ``delta = 1/n`` this is the removal lemma
    of the L2 theory: ``P(||dX(s)||_inf <= tau_N(s)) >= 1 - 1/N``, and a union bound over a set
    ``T'`` keeps every label whose dense margin exceeds ``2 tau_N(s)`` with probability
    ``>= 1 - |T'| delta``.

    Returns:
      The per-sample thresholds (float64, shape ``(|T|,)``).

    Raises:
      ValueError: if ``delta`` is not in ``(0, 1)``.
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta={delta}: must lie in (0, 1).")
    x = f64(psi1)
    x = x.reshape(x.shape[0], -1, x.shape[-1])
    norms = np.linalg.norm(x, axis=-1).max(axis=1)
    lip = np.broadcast_to(f64(lipschitz), norms.shape)
    return lip * norms * math.sqrt(2.0 * g / n * math.log(2.0 * n * x.shape[1] / delta))


def gaussian_g_from_edge(sigma_plus: float, n: int, m: int) -> float:
    """MP-edge form: ``g`` from the bulk edge ``sigma_plus = sqrt(g) (1 + sqrt(m/n))`` of an
    ``n x m`` matrix with iid ``N(0, g/n)`` entries (singular-value scale).

    Examples:
      >>> gaussian_g_from_edge(3.0, n=4, m=4)  # sqrt(g) (1 + 1) = 3
      2.25
    """
    return float(sigma_plus / (1.0 + math.sqrt(m / n))) ** 2
