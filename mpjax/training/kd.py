"""The knowledge-distillation loss: smoothed cross-entropy plus a tempered KL to the teacher.

See `docs/method/distillation.md` (KD loss). With student logits ``s``, teacher logits ``t``,
labels ``y`` over ``K`` classes:

    L = (1 - a) CE_ls(s, y) + a tau^2 KL(softmax(t / tau) || softmax(s / tau)),

where ``CE_ls`` is the cross-entropy against labels smoothed to ``(1 - ls) onehot + ls / K``.
The paper's setting is ``a = 0.5``, ``tau = 2``, ``ls = 0.1`` (the defaults here).

References:
  [P26] Berlyand et al., "Pruning DNNs via the Marchenko-Pastur Distribution",
  arXiv 2606.02608: distillation with a frozen mask.
  Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", arXiv 1503.02531
  (the ``tau^2`` factor).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "kd_loss",
    "kd_terms",
]


def kd_terms(
    student_logits: jax.Array,
    teacher_logits: jax.Array | None,
    labels: jax.Array,
    alpha: float = 0.5,
    tau: float = 2.0,
    label_smoothing: float = 0.1,
) -> dict[str, jax.Array]:
    """Batch means of the distillation loss and its two parts (see :func:`kd_loss`).

    Args:
      student_logits: ``[B, K]``.
      teacher_logits: ``[B, K]`` or ``None`` (no teacher: plain smoothed cross-entropy).
      labels: int ``[B]``.
      alpha: weight ``a`` of the KD term.
      tau: temperature.
      label_smoothing: ``ls``.

    Returns:
      ``{"loss", "ce", "kl"}`` (scalars); ``kl`` is 0 and ``loss == ce`` when
      ``teacher_logits`` is None.

    Examples:
      >>> z = jnp.array([[2.0, 0.0, -1.0]])
      >>> terms = kd_terms(z, None, jnp.array([0]))
      >>> bool(terms["loss"] == terms["ce"]), float(terms["kl"])
      (True, 0.0)
    """
    num_classes = student_logits.shape[-1]
    targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
    ce = optax.softmax_cross_entropy(student_logits, targets).mean()
    if teacher_logits is None:
        return {"loss": ce, "ce": ce, "kl": jnp.zeros_like(ce)}
    log_pt = jax.nn.log_softmax(jax.lax.stop_gradient(teacher_logits) / tau)
    log_ps = jax.nn.log_softmax(student_logits / tau)
    kl = jnp.sum(jnp.exp(log_pt) * (log_pt - log_ps), axis=-1).mean()
    return {"loss": (1.0 - alpha) * ce + alpha * tau**2 * kl, "ce": ce, "kl": kl}


def kd_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array | None,
    labels: jax.Array,
    **settings: float,
) -> jax.Array:
    """Knowledge-distillation loss, batch mean.

    L = (1 - a) CE_ls(s, y) + a tau^2 KL(softmax(t / tau) || softmax(s / tau)),
    where CE_ls is the cross-entropy against labels smoothed to ``(1 - ls) onehot + ls / K``.
    The teacher logits get no gradient. Without a teacher, L = CE_ls.
    See `docs/method/distillation.md` (KD loss).

    Args:
      student_logits: ``[B, K]``.
      teacher_logits: ``[B, K]`` or ``None``.
      labels: int ``[B]``.
      **settings: ``alpha`` (weight ``a`` of the KD term, default 0.5), ``tau``
        (temperature, default 2; the ``tau^2`` factor keeps gradient scale independent of
        ``tau``) and ``label_smoothing`` (``ls``, default 0.1), by keyword, as in
        :func:`kd_terms`.

    Returns:
      The scalar loss ``L``.

    Examples:
      >>> z = jnp.array([[2.0, 0.0, -1.0]])
      >>> bool(jnp.isclose(kd_loss(z, z, jnp.array([0]), alpha=1.0), 0.0))
      True

    References:
      [P26] arXiv 2606.02608, distillation with a frozen mask (a = 0.5, tau = 2, ls = 0.1).
    """
    return kd_terms(student_logits, teacher_logits, labels, **settings)["loss"]
