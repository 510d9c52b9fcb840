"""Input-channel permutations for N:M sparsity, baked into the parameters.

An N:M mask groups ``n`` consecutive inputs of a layer. Reordering the inputs so that each
group holds one strong and one weak column (by ``|W|`` column sums times the mean input
magnitude) lets the mask keep more of the important weights. The permutation is baked into
the weights so the *dense* function is unchanged: permuting the inputs ``d_in`` of a consumer
layer ``L`` means permuting the outputs ``d_out`` (rows of the matrix view, and the bias) of
the layer ``P`` that produces them, when only an elementwise map (GELU, ReLU) sits between:

    y = W_L act(W_P x + b_P) = W_L[:, perm] act(W_P[perm] x + b_P[perm]).

Pairs: ``MlpBlock_0/Dense_0 -> Dense_1`` (``mlp.fc1 -> mlp.fc2`` in torch layout), and
attention ``value -> out``, where a permutation *within each head* of ``head_dim`` commutes
with the attention weights (``softmax(QK^T) V_h`` is linear in the columns of ``V_h``).
See `docs/method/cast.md` (permutations).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from mpjax import tree

PyTree = Any

__all__ = [
    "column_scores",
    "find_pairs",
    "head_permutation",
    "interleave",
    "nm_permutation",
    "permute_pair",
    "permute_vit",
]


def interleave(scores: np.ndarray, n: int) -> np.ndarray:
    """Permutation of ``len(scores)`` columns giving every group of ``n`` one column per bucket.

    Columns are sorted by descending score (stable), split into ``n`` buckets of
    ``d / n`` consecutive ranks, and interleaved: group ``g`` takes the ``g``-th column of
    each bucket. ``new_column[j] = old_column[perm[j]]``.

    Examples:
      >>> interleave(np.array([0.0, 5.0, 1.0, 4.0]), 2).tolist()
      [1, 2, 3, 0]
    """
    d = scores.shape[0]
    if d % n:
        raise ValueError(f"interleave: {d} columns are not divisible by n={n}.")
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    return order.reshape(n, d // n).T.reshape(-1)


def column_scores(W: Any, input_scale: Any | None = None) -> np.ndarray:
    """``sum_i |W_ij| * mean|x_j|`` for a ``(d_out, d_in)`` view (scale 1 without inputs)."""
    s = np.abs(np.asarray(W, np.float32)).sum(axis=0)
    return s if input_scale is None else s * np.asarray(input_scale, np.float32)


def nm_permutation(W: Any, n: int, inputs: Any | None = None) -> np.ndarray:
    """The interleaving permutation of ``W``'s inputs (``inputs``: calibration ``(T, d_in)``)."""
    scale = None if inputs is None else np.abs(np.asarray(inputs, np.float32)).reshape(
        -1, np.shape(inputs)[-1]).mean(axis=0)
    return interleave(column_scores(W, scale), n)


def head_permutation(W: Any, heads: int, n: int, inputs: Any | None = None) -> np.ndarray:
    """A permutation of ``heads * head_dim`` inputs that stays within each head."""
    d_in = np.shape(W)[1]
    hd = d_in // heads
    scale = None if inputs is None else np.abs(np.asarray(inputs, np.float32)).reshape(
        -1, d_in).mean(axis=0)
    sc = column_scores(W, scale)
    return np.concatenate([h * hd + interleave(sc[h * hd:(h + 1) * hd], n) for h in range(heads)])


def _bias_path(kernel_path: str) -> str:
    for sep in ("/", "."):
        if sep in kernel_path:
            head, _ = kernel_path.rsplit(sep, 1)
            return head + sep + "bias"
    return "bias"


def permute_pair(
    params: PyTree,
    producer_path: str,
    consumer_path: str,
    perm: Any,
    *,
    producer_bias_path: str | None = None,
    views: Mapping[str, tree.LayerView] | None = None,
) -> PyTree:
    """Permute the producer's outputs (rows, bias) and the consumer's inputs together.

    Args:
      params: parameter pytree.
      producer_path: weight leaf whose ``d_out`` feeds the consumer (e.g.
        ``.../MlpBlock_0/Dense_0/kernel``, or ``.../value/kernel``).
      consumer_path: weight leaf whose ``d_in`` is permuted (``.../Dense_1/kernel``).
      perm: ``new[j] = old[perm[j]]``, length ``d_in`` of the consumer.
      producer_bias_path: default: the sibling ``bias`` leaf, if any (any shape with
        ``d_out`` entries, e.g. ``(heads, head_dim)``).
      views: ``LayerView`` overrides (default inferred by ``tree.select``).

    Returns:
      New params with the same structure; the dense function is unchanged when only an
      elementwise map sits between the two layers.

    Raises:
      ValueError: unknown paths, or sizes that do not line up.
    """
    views = dict(tree.select(params)) if views is None else dict(views)
    for p in (producer_path, consumer_path):
        if p not in views:
            raise ValueError(f"{p}: not a weight matrix of params; check the path.")
    vp, vc = views[producer_path], views[consumer_path]
    perm = np.asarray(perm)
    if vp.d_out != vc.d_in or sorted(perm.tolist()) != list(range(vc.d_in)):
        raise ValueError(
            f"{consumer_path}: perm must be a permutation of its d_in={vc.d_in}, which must "
            f"equal d_out={vp.d_out} of {producer_path}."
        )
    mats = tree.matrices(params, {producer_path: vp, consumer_path: vc})
    new = {producer_path: mats[producer_path][perm, :], consumer_path: mats[consumer_path][:, perm]}
    out = tree.replace_matrices(params, new, {producer_path: vp, consumer_path: vc})
    bias_path = producer_bias_path or _bias_path(producer_path)
    leaves = tree.flatten(out)
    if bias_path in leaves:
        b = jnp.asarray(leaves[bias_path])
        if b.size != vp.d_out:
            raise ValueError(f"{bias_path}: {b.size} entries, expected d_out={vp.d_out}.")
        leaves[bias_path] = b.reshape(-1)[perm].reshape(b.shape)
        out = tree.unflatten_like(out, leaves)
    return out


def find_pairs(params: PyTree) -> list[tuple[str, str, str]]:
    """``(producer, consumer, kind)`` pairs of a ViT-like tree; kind ``"mlp"`` or ``"attn"``.

    Recognises Linen ``MlpBlock_0/Dense_0 -> Dense_1`` and ``value -> out`` (DenseGeneral),
    and torch-layout ``mlp.fc1 -> mlp.fc2``.
    """
    paths = list(tree.select(params))
    pairs = []
    for p in paths:
        for a, b, kind in (("MlpBlock_0/Dense_0/", "MlpBlock_0/Dense_1/", "mlp"),
                           ("mlp.fc1.", "mlp.fc2.", "mlp"),
                           ("/value/", "/out/", "attn")):
            if a in p and p.replace(a, b) in paths:
                pairs.append((p, p.replace(a, b), kind))
    return pairs


def permute_vit(
    params: PyTree,
    n: int,
    *,
    calib_inputs: Mapping[str, Any] | None = None,
    attention: bool = True,
) -> tuple[PyTree, dict[str, np.ndarray]]:
    """Bake N:M input permutations into every MLP (and attention value->out) pair.

    Args:
      params: ViT-like parameters (see :func:`find_pairs`).
      n: group size of the N:M pattern.
      calib_inputs: optional ``{consumer_path: X (rows, d_in)}`` of the *unpermuted* model,
        for the mean-``|x|`` factor of the column score.
      attention: also permute ``head_dim`` within each head for ``value -> out``.

    Returns:
      ``(params, {consumer_path: perm})``. Calibration inputs captured before permuting
      must be re-indexed as ``X[:, perm]`` for the consumer layer.
    """
    calib_inputs = calib_inputs or {}
    views = tree.select(params)
    perms = {}
    for prod, cons, kind in find_pairs(params):
        if kind == "attn" and not attention:
            continue
        W = tree.matrices(params, {cons: views[cons]})[cons]
        X = calib_inputs.get(cons)
        if kind == "attn":
            heads = views[cons].leaf_shape[0] if views[cons].kind == "attn_out" else 1
            if (views[cons].d_in // heads) % n:
                continue
            perm = head_permutation(W, heads, n, X)
        else:
            if views[cons].d_in % n:
                continue
            perm = nm_permutation(W, n, X)
        params = permute_pair(params, prod, cons, perm, views=views)
        perms[cons] = perm
    return params, perms
