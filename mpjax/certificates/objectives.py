"""Training objectives and margins: cross-entropy, the elastic-net objective, logit margins.

Conventions (shared with :mod:`mpjax.certificates.bounds`):

* ``logits`` have shape ``(batch, classes)``, ``labels`` are integer class ids ``(batch,)``.
* Cross-entropy is the **mean** over the samples of
  ``ce(z, y) = logsumexp(z) - z_y`` (natural log).
* Weight matrices are the ``(d_out, d_in)`` views of :mod:`mpjax.tree`. The elastic-net
  objective of [P26] is

  .. math:: J(A) = \\mathrm{CE}(A) + \\lambda_2 \\|A\\|_F^2 + \\lambda_1 \\|A\\|_1,

  with ``||A||_1 = sum_ij |A_ij|`` (entrywise, not the operator norm). The weighted variant
  uses per-entry weights: ``l2 * sum w2_ij A_ij^2 + l1 * sum w1_ij |A_ij|``.
* Margins: the *predicted* margin is ``z_top - max_{j != top} z_j >= 0`` (0 on a tie for the
  top); the *true-label* margin is ``z_y - max_{j != y} z_j`` (negative when misclassified).

See ``docs/method/certificates.md`` for how these enter the certificates.

References:
  [P26] Berlyand, Bourdais, Owhadi, Shmalo et al., "Pruning DNNs via the Marchenko-Pastur
  Distribution" (arXiv 2606.02608), Sec. "Certificates".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from mpjax import tree

Array = Any
PyTree = Any

__all__ = [
    "per_sample_cross_entropy",
    "cross_entropy",
    "l2_penalty",
    "l1_penalty",
    "elastic_net_penalty",
    "params_penalty",
    "elastic_net_objective",
    "predicted_margin",
    "true_margin",
    "accuracy",
]


def _check_logits(logits: Array, labels: Array | None = None) -> None:
    if jnp.ndim(logits) != 2:
        raise ValueError(
            f"logits: expected shape (batch, classes), got {jnp.shape(logits)}; "
            "reshape the model output to 2-D."
        )
    if jnp.shape(logits)[1] < 2:
        raise ValueError("logits: need at least 2 classes for margins and cross-entropy.")
    if labels is None:
        return
    if jnp.ndim(labels) != 1 or jnp.shape(labels)[0] != jnp.shape(logits)[0]:
        raise ValueError(
            f"labels: expected shape ({jnp.shape(logits)[0]},) to match logits, "
            f"got {jnp.shape(labels)}."
        )
    if not jnp.issubdtype(jnp.asarray(labels).dtype, jnp.integer):
        raise ValueError("labels: expected integer class ids (not one-hot, not floats).")


@jax.jit
def _ce(z: Array, labels: Array) -> Array:
    picked = jnp.take_along_axis(z, labels[:, None], axis=1)[:, 0]
    return jax.nn.logsumexp(z, axis=1) - picked


@jax.jit
def _top2_gap(z: Array) -> Array:
    top2 = jax.lax.top_k(z, 2)[0]
    return top2[:, 0] - top2[:, 1]


@jax.jit
def _true_gap(z: Array, labels: Array) -> Array:
    z_y = jnp.take_along_axis(z, labels[:, None], axis=1)[:, 0]
    others = jnp.where(jax.nn.one_hot(labels, z.shape[1], dtype=bool), -jnp.inf, z)
    return z_y - jnp.max(others, axis=1)


def per_sample_cross_entropy(logits: Array, labels: Array) -> Array:
    """``ce(z_s, y_s) = logsumexp(z_s) - z_s[y_s]`` for every sample, shape ``(batch,)``.

    Its gradient in ``z`` is ``softmax(z) - e_y``, whose l1 norm is ``2 (1 - p_y) <= 2``:
    ``ce`` is 2-Lipschitz from ``(R^C, ||.||_inf)`` to ``R``, the constant behind the
    factor 2 in the data-path bound of :mod:`mpjax.certificates.bounds`.

    Examples:
      >>> import jax.numpy as jnp
      >>> float(per_sample_cross_entropy(jnp.zeros((1, 4)), jnp.array([2]))[0])  # log 4
      1.386...
    """
    _check_logits(logits, labels)
    return _ce(jnp.asarray(logits), jnp.asarray(labels))


def cross_entropy(logits: Array, labels: Array) -> Array:
    """Mean cross-entropy ``CE = (1/|T|) sum_s ce(z_s, y_s)`` from logits (a scalar)."""
    return jnp.mean(per_sample_cross_entropy(logits, labels))


@jax.jit
def l2_penalty(matrix: Array, weights: Array | None = None) -> Array:
    """``||A||_F^2 = sum_ij A_ij^2``, or ``sum_ij w_ij A_ij^2`` with per-entry ``weights``."""
    sq = jnp.square(matrix)
    return jnp.sum(sq if weights is None else weights * sq)


@jax.jit
def l1_penalty(matrix: Array, weights: Array | None = None) -> Array:
    """``||A||_1 = sum_ij |A_ij|`` (entrywise), or ``sum_ij w_ij |A_ij|`` with ``weights``."""
    a = jnp.abs(matrix)
    return jnp.sum(a if weights is None else weights * a)


def _as_mapping(matrices: Array | Mapping[str, Array]) -> Mapping[str, Array]:
    return matrices if isinstance(matrices, Mapping) else {"": matrices}


def _check_strengths(l1: float | Array, l2: float | Array) -> None:
    """Reject negative strengths; traced values (under ``jit``/``vmap``) are not checked."""
    try:
        negative = float(l1) < 0 or float(l2) < 0
    except (jax.errors.ConcretizationTypeError, TypeError):
        return  # a tracer: its sign is unknown here, the caller owns the check
    if negative:
        raise ValueError(f"l1={l1}, l2={l2}: regularisation strengths must be >= 0.")


def elastic_net_penalty(
    matrices: Array | Mapping[str, Array],
    l1: float | Array,
    l2: float | Array,
    weights: Array | Mapping[str, Array] | None = None,
) -> Array:
    """``sum_A [l2 ||A||_F^2 + l1 ||A||_1]`` over one matrix or a ``{path: matrix}`` dict.

    Args:
      matrices: one matrix or ``{path: W}``.
      l1: weight of the entrywise l1 norm (``>= 0``); a float or a scalar array.
      l2: weight of the squared Frobenius norm (``>= 0``); a float or a scalar array.
      weights: optional per-entry weights of the same structure as ``matrices`` (used by
        both terms); entries of a mapping may be missing (= unweighted).

    Raises:
      ValueError: if ``l1`` or ``l2`` is negative (checked when they are concrete values).
    """
    _check_strengths(l1, l2)
    mats = _as_mapping(matrices)
    ws = {} if weights is None else _as_mapping(weights)
    total = jnp.zeros(())
    for path, a in mats.items():
        w = ws.get(path)
        total = total + l2 * l2_penalty(a, w) + l1 * l1_penalty(a, w)
    return total


def params_penalty(
    params: PyTree,
    l1: float | Array,
    l2: float | Array,
    views: Mapping[str, tree.LayerView] | None = None,
) -> Array:
    """The elastic-net penalty of a parameter pytree: ``sum_W [l2 ||W||_F^2 + l1 ||W||_1]``.

    This is mpjax's one definition of the penalty of ``J = CE + penalty``, used by the
    certificates and by the L2 dynamics study. Only the weight matrices count (Dense,
    DenseGeneral and Conv kernels as selected by :func:`mpjax.tree.select`); biases,
    normalisation scales and embeddings are excluded. ``||W||_1 = sum_ij |W_ij|`` is entrywise.

    Args:
      params: a parameter pytree (e.g. a Linen ``params`` dict).
      l1: strength of the l1 term (``>= 0``): a float or a scalar array. Traced values work,
        so the penalty can be used inside ``jit``/``grad`` and ``vmap``-ed over per-member
        strengths; their sign is then not checked.
      l2: strength of the squared Frobenius term (``>= 0``), same forms as ``l1``.
      views: the matrices to penalise, ``{path: LayerView}``; default every weight matrix
        (:func:`mpjax.tree.select`).

    Returns:
      A scalar array (float32 unless the parameters are float64).

    Raises:
      ValueError: if a concrete ``l1`` or ``l2`` is negative.

    Examples:
      >>> import jax.numpy as jnp
      >>> params = {"Dense_0": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)}}
      >>> float(params_penalty(params, l1=1.0, l2=0.5))  # 6 + 0.5 * 6, the bias excluded
      9.0
    """
    return elastic_net_penalty(tree.matrices(params, views), l1, l2)


def elastic_net_objective(
    logits: Array,
    labels: Array,
    matrices: Array | Mapping[str, Array],
    l1: float,
    l2: float,
    weights: Array | Mapping[str, Array] | None = None,
) -> Array:
    """``J = CE(logits, labels) + l2 sum ||A||_F^2 + l1 sum ||A||_1`` (mean CE over samples).

    Examples:
      >>> import jax.numpy as jnp
      >>> z, y, A = jnp.zeros((2, 2)), jnp.array([0, 1]), jnp.array([[1.0, -2.0]])
      >>> round(float(elastic_net_objective(z, y, A, l1=0.1, l2=0.01)), 4)  # log2 + .05 + .3
      1.0431
    """
    return cross_entropy(logits, labels) + elastic_net_penalty(matrices, l1, l2, weights)


def predicted_margin(logits: Array) -> Array:
    """``z_top - max_{j != top} z_j`` per sample (``>= 0``; exactly 0 on a tie at the top)."""
    _check_logits(logits)
    return _top2_gap(jnp.asarray(logits))


def true_margin(logits: Array, labels: Array) -> Array:
    """``z_y - max_{j != y} z_j`` per sample: ``> 0`` iff the label is the unique argmax."""
    _check_logits(logits, labels)
    return _true_gap(jnp.asarray(logits), jnp.asarray(labels))


def accuracy(logits: Array, labels: Array) -> Array:
    """Share of samples whose ``argmax`` (first index on ties) equals the label."""
    _check_logits(logits, labels)
    return jnp.mean(jnp.argmax(jnp.asarray(logits), axis=1) == jnp.asarray(labels))
