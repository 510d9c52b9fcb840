"""The one-shot step of a prune job: calibration inputs, budgets, masks, reconstruction, errors.

:func:`calibration_images` draws the calibration images from the *training* split (never the
test split), with the job's seed, once per job: every method that reads calibration data
(CAST covariances, Wanda / RIA input norms, SparseGPT's Hessian ``H = X^T X``, the
reconstruction) sees the layer inputs of the same images.

``--budget`` gives per-layer sparsities (:func:`mpjax.pruning.layer_budget`) to the
methods that take a budget: ``uniform`` (every layer at the target ``S``), ``seb`` (the
per-layer sparsities that SEB's global ``|W| / w_l`` ranking reaches) or ``alpha``
(AlphaPruning: more sparsity for the layers whose Hill exponent ``alpha_l`` is larger).

``--reconstruct`` refits the kept weights of every masked layer, row by row, to the dense
layer's outputs on the calibration inputs: ``(H_KK + lambda I) w = H_K: w_dense`` with
``H = X^T X`` (:func:`mpjax.pruning.reconstruct`); ``parallel`` uses the dense model's inputs
for every layer, ``sequential`` goes in forward order and takes each layer's inputs from the
model whose earlier layers are already pruned and refitted.

:func:`network_errors` measures what pruning costs each layer inside the pruned network:
the relative output error

``e_l = ||W_l X_l - W_l^dense X_l^dense||_F / ||W_l^dense X_l^dense||_F``

on the calibration images, with ``X_l`` the layer's inputs in the pruned model and
``X_l^dense`` in the dense one (the same yardstick for every method and reconstruction mode;
:func:`output_errors` without ``own_inputs`` gives the layer alone, ``X_l = X_l^dense``).
The report gives it before and after reconstruction.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mpjax import arch, tree
from mpjax.models import vit
from mpjax.pruning import METHODS, layer_budget, prune, reconstruct, reconstruct_sequential
from mpjax.training import prepare_images

#: What ``--reconstruct`` accepts: no refit, every layer on the dense model's inputs, or the
#: layers in forward order on the inputs of the already pruned model.
RECONSTRUCT_MODES = ("off", "parallel", "sequential")
#: What ``--budget`` accepts (per-layer sparsities of an unstructured target).
BUDGETS = ("uniform", "seb", "alpha")
#: Rows of calibration inputs kept per layer (covariances, input norms, Hessians, refits).
CALIB_ROWS = 4096

__all__ = [
    "BUDGETS",
    "RECONSTRUCT_MODES",
    "CALIB_ROWS",
    "LayerError",
    "OneShot",
    "calibration_images",
    "capture_inputs",
    "error_rows",
    "network_errors",
    "output_errors",
    "prune_one_shot",
    "reads_calibration",
    "refit_shot",
    "relative_output_error",
]


@dataclasses.dataclass(frozen=True)
class LayerError:
    """One layer's relative output error on the calibration inputs.

    Attributes:
      path: the kernel's path.
      before: error of the pruned layer before reconstruction.
      after: error after reconstruction (equal to ``before`` when none ran).
    """

    path: str
    before: float
    after: float


@dataclasses.dataclass(frozen=True)
class OneShot:
    """What :func:`prune_one_shot` returns.

    Attributes:
      params: the pruned (and, with reconstruction, refitted) parameters.
      masks: the masks pytree (``True`` = kept).
      pruning: the report dict of :func:`mpjax.pruning.prune`.
      errors: per-layer relative output errors before/after reconstruction (``None``
        without reconstruction).
    """

    params: Any
    masks: Any
    pruning: dict[str, Any]
    errors: list[LayerError] | None = None


def calibration_images(
    train: tuple[np.ndarray, np.ndarray], count: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` training images and labels drawn without replacement with ``seed``.

    Args:
      train: the training split ``(images, labels)``.
      count: how many images (``--calib-images``).
      seed: the job's seed.

    Raises:
      ValueError: naming ``--calib-images`` when the split holds fewer images.
    """
    available = len(train[0])
    if not 1 <= count <= available:
        raise ValueError(f"--calib-images {count}: the training split has {available} "
                         f"images; pass 1 to {available}.")  # fmt: skip
    idx = np.random.default_rng(seed).choice(available, count, replace=False)
    return train[0][idx], train[1][idx]


def relative_output_error(
    w_dense: np.ndarray, w: np.ndarray, x: np.ndarray, x_own: np.ndarray | None = None
) -> float:
    """``||W X_own^T - W_dense X^T||_F / ||W_dense X^T||_F`` for inputs of shape ``(rows, d_in)``.

    ``X`` are the dense model's inputs of the layer, ``X_own`` (default ``X``) the inputs the
    layer receives inside the pruned model; with ``X_own = X`` this is
    ``||(W - W_dense) X^T||_F / ||W_dense X^T||_F``, computed from ``G = X^T X``. Float64.

    Examples:
      >>> x = np.eye(3)
      >>> relative_output_error(np.ones((2, 3)), np.zeros((2, 3)), x)
      1.0
    """
    x = np.asarray(x, np.float64)
    w_dense = np.asarray(w_dense, np.float64)
    if x_own is not None:
        target = x @ w_dense.T
        diff = np.asarray(x_own, np.float64) @ np.asarray(w, np.float64).T - target
        den = float(np.sum(target * target))
        return float(np.sqrt(np.sum(diff * diff) / den)) if den > 0 else float(np.linalg.norm(diff))
    gram = x.T @ x
    diff = np.asarray(w, np.float64) - w_dense
    num = float(np.einsum("ij,jk,ik->", diff, gram, diff))
    den = float(np.einsum("ij,jk,ik->", w_dense, gram, w_dense))
    return float(np.sqrt(max(num, 0.0) / den)) if den > 0 else float(np.sqrt(max(num, 0.0)))


def output_errors(
    dense: Any,
    params: Any,
    views: Mapping[str, tree.LayerView],
    inputs: Mapping[str, Any],
    own_inputs: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """:func:`relative_output_error` of every layer of ``views`` that has inputs.

    Args:
      dense: the dense parameter pytree.
      params: the pruned (or reconstructed) pytree, same structure.
      views: the pruned layers.
      inputs: ``{path: X (rows, d_in)}`` captured on the dense model.
      own_inputs: the same rows captured on the model of ``params`` (default ``inputs``: the
        error of each layer alone on the dense inputs).
    """
    dense_m, new_m = tree.matrices(dense, views), tree.matrices(params, views)
    own = inputs if own_inputs is None else own_inputs
    return {p: relative_output_error(dense_m[p], new_m[p], inputs[p],
                                     None if own_inputs is None else own[p])
            for p in views if p in inputs}  # fmt: skip


def error_rows(before: Mapping[str, float], after: Mapping[str, float]) -> list[LayerError]:
    """One :class:`LayerError` per layer of ``before``, in natural path order."""
    return [LayerError(p, before[p], after.get(p, before[p]))
            for p in sorted(before, key=tree.natural_key)]  # fmt: skip


def capture_inputs(
    config: vit.ViTConfig, params: Any, images: np.ndarray, tome_r: int = 0
) -> dict[str, np.ndarray]:
    """Every layer's inputs ``{kernel path: X (rows, d_in)}`` on ``images`` (first
    :data:`CALIB_ROWS` rows), captured with ``tome_r`` merges per block."""
    _, inputs = vit.layer_inputs(config, params, prepare_images(images), tome_r)
    return {p: np.asarray(x[:CALIB_ROWS]) for p, x in inputs.items()}


def grad_fn(apply_fn: Callable, images: np.ndarray, labels: np.ndarray) -> Callable:
    """``params -> grads`` of the mean cross-entropy on one calibration batch (SER)."""
    x, y = prepare_images(images), jnp.asarray(labels)

    def loss(params):
        logits = apply_fn(params, x, False)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    return jax.jit(jax.grad(loss))


def tokens_per_layer(
    config: vit.ViTConfig | None, views: Mapping[str, Any], tome_r: int
) -> dict[str, int] | None:
    """Tokens each pruned block layer sees per image (ToMe shrinks later blocks)."""
    if config is None:
        return None
    counts = arch.tome_schedule(config.num_tokens, config.num_layers, tome_r)
    return {p: counts[int(p.split("encoderblock_")[1].split("/")[0])]
            for p in views if "encoderblock_" in p}  # fmt: skip


def reads_calibration(method: str) -> bool:
    """Whether ``method`` reads calibration inputs (CAST covariances, input norms, Hessians)."""
    m = METHODS[method]
    return any(getattr(m, flag, False)
               for flag in ("needs_calibration", "needs_input_norms", "needs_hessian"))  # fmt: skip


def prune_one_shot(
    config: vit.ViTConfig | None,
    params: Any,
    method: str,
    pattern: str,
    sparsity: float | None,
    *,
    include: str | None,
    calib: tuple[np.ndarray, np.ndarray] | None,
    tome_r: int = 0,
    budget: str | None = None,
    reconstruct: str = "off",
    apply_fn: Callable | None = None,
) -> OneShot:
    """Prune ``params`` with one method from one set of calibration images, then refit.

    The layer inputs of ``calib`` (captured once, on ``params``, with ``tome_r``) feed every
    method that reads calibration data and the reconstruction, so all methods of a
    comparison see the same inputs.

    Args:
      config: the ViT config (``None`` for other models: no calibration inputs).
      params: the dense (possibly permuted) parameters.
      method, pattern, sparsity: as :func:`mpjax.pruning.prune`.
      include: glob of the layers to prune.
      calib: calibration ``(images, labels)`` from the training split, or ``None``.
      tome_r: ToMe merges per block while capturing inputs.
      budget: a name of :data:`BUDGETS` (unstructured methods that take a budget), or
        ``None`` for the method's own criterion.
      reconstruct: a mode of :data:`RECONSTRUCT_MODES`.
      apply_fn: ``apply_fn(params, images, train)`` for SER's gradient function.

    Raises:
      ValueError: a method or reconstruction that needs calibration data without ``calib``.
    """
    m = METHODS[method]
    views = tree.select(params, include=include)
    needs_inputs = reads_calibration(method) or reconstruct != "off"
    if needs_inputs and (calib is None or config is None):
        flag = "--method" if reads_calibration(method) else "--reconstruct"
        raise ValueError(f"{flag}: calibration inputs need a ViT source and --data.")
    inputs = capture_inputs(config, params, calib[0], tome_r) if needs_inputs else None
    signals: dict[str, Any] = {}
    if reads_calibration(method):
        signals["calib_inputs"] = inputs
    if m.uses_grad_fn and calib is not None and apply_fn is not None:
        signals["grad_fn"] = grad_fn(apply_fn, *calib)
    if budget is not None:
        signals["budget"] = layer_budget(params, budget, float(sparsity), views=views)
    with warnings.catch_warnings():  # skipped layers are listed in the report instead
        warnings.filterwarnings("ignore", message="N:M skipped", category=UserWarning)
        pruned, masks, pruning = prune(
            params, method, pattern, sparsity, include=include,
            tokens=tokens_per_layer(config, views, tome_r), on_indivisible="skip", **signals,
        )  # fmt: skip
    shot = OneShot(pruned, masks, pruning)
    if reconstruct == "off":
        return shot
    return refit_shot(config, params, shot, reconstruct, calib[0], tome_r, inputs=inputs)


def refit_shot(
    config: vit.ViTConfig,
    dense: Any,
    shot: OneShot,
    mode: str,
    images: np.ndarray,
    tome_r: int = 0,
    *,
    inputs: Mapping[str, np.ndarray] | None = None,
) -> OneShot:
    """``shot`` with its kept weights refitted on the layer inputs of ``images``.

    Args:
      config: the ViT config.
      dense: the dense parameters the masks were chosen on.
      shot: the pruned parameters and masks.
      mode: ``"parallel"`` or ``"sequential"``.
      images: the calibration images.
      tome_r: ToMe merges per block while capturing inputs.
      inputs: the dense model's inputs of ``images``, when already captured.

    Returns:
      A :class:`OneShot` with the refitted params and per-layer errors before/after.
    """
    inputs = capture_inputs(config, dense, images, tome_r) if inputs is None else inputs
    before = network_errors(config, dense, shot.params, shot.masks, images, tome_r, inputs)
    refit = _refit(mode, config, dense, shot, images, inputs, tome_r)
    after = network_errors(config, dense, refit, shot.masks, images, tome_r, inputs)
    return dataclasses.replace(shot, params=refit, errors=error_rows(before, after))


def network_errors(
    config: vit.ViTConfig,
    dense: Any,
    params: Any,
    masks: Any,
    images: np.ndarray,
    tome_r: int = 0,
    inputs: Mapping[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """Each masked layer's relative output error inside the pruned network.

    ``e_l = ||W_l X_l^T - W_l^dense (X_l^dense)^T||_F / ||W_l^dense (X_l^dense)^T||_F`` with
    ``X_l`` the layer's inputs in the model of ``params`` and ``X_l^dense`` in the dense
    model, on the same calibration images: the error a layer passes on, including what the
    layers before it changed (both reconstruction modes are measured alike).
    """
    inputs = capture_inputs(config, dense, images, tome_r) if inputs is None else inputs
    own = capture_inputs(config, params, images, tome_r)
    views = {p: v for p, v in tree.select(dense).items() if p in tree.flatten(masks)}
    return output_errors(dense, params, views, inputs, own)


def _refit(mode, config, dense, shot, images, inputs, tome_r) -> Any:
    """The reconstructed parameters (:func:`mpjax.pruning.reconstruct`): the kept weights of
    every masked layer re-solved from the dense ones on the calibration inputs (a layer keeps
    the method's own weights where the refit does not lower its output error)."""
    if mode == "parallel":
        return reconstruct(dense, shot.masks, pruned=shot.params, calib_inputs=inputs)[0]

    def capture(p):
        return capture_inputs(config, p, images, tome_r)

    return reconstruct_sequential(dense, shot.masks, capture, pruned=shot.params)[0]
