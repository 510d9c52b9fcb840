"""MACs per image of a pruned ViT, counted from the masks that were actually applied.

One accounting for the prune report and ``mpjax export`` (:mod:`mpjax.export` counts the
same way): each linear layer of :func:`mpjax.export.layer_map` (patch embedding, fused qkv,
proj, fc1, fc2, head) costs ``k/n`` of its dense MACs when its applied mask keeps at most
``k`` of every ``n`` inputs along ``d_in`` for the job's ``k:n`` pattern
(:func:`mpjax.export.check_nm_matrix`), and its full MACs otherwise:

* a layer left dense (skipped as indivisible by ``n``, or outside ``--include``);
* an unstructured mask: scattered zeros change no MAC count (no kernel here skips them);
* a fused qkv whose query, key and value are not all masked (the runtime fuses them).

ToMe lowers the token count of later blocks (:func:`mpjax.arch.vit_macs`, block
convention); low rank keeps no mask and runs the rank-``r`` matrices dense, so its MACs are
the dense ones, with what two factor layers per matrix would cost given beside them
(``factored_gmac``). See `docs/method/macs.md`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mpjax import arch, export, tree
from mpjax.pipeline.report import MacSummary

__all__ = [
    "layer_patterns",
    "mac_summary",
]


def _flat(masks: Any) -> dict[str, np.ndarray]:
    if masks is None:
        return {}
    inner = masks.get("params", masks) if isinstance(masks, Mapping) else masks
    return {p: np.asarray(m, bool) for p, m in tree.flatten(inner).items()}


def _fused(flat: Mapping[str, np.ndarray], paths: list[str]) -> np.ndarray | None:
    """The ``(d_out, d_in)`` mask of one timm layer (q/k/v stacked), ``None`` if not all masked."""
    if not all(p in flat for p in paths):
        return None
    return np.concatenate([tree.to_matrix(flat[p], tree.view_of(p, flat[p].shape)) for p in paths])


def layer_patterns(masks: Any, config: Any, pattern: str) -> dict[str, str]:
    """``{timm layer name: "k:n"}`` of the layers whose applied mask follows ``pattern``.

    Args:
      masks: the masks pytree the job applied (``None`` leaves where a layer was left dense).
      config: the ViT config (anything :func:`mpjax.arch.vit_dims` reads).
      pattern: the job's pattern; ``"unstructured"`` counts no layer as sparse.

    Returns:
      Only the layers counted at ``k/n``; every other layer counts dense.
    """
    if pattern == "unstructured":
        return {}
    flat = _flat(masks)
    out = {}
    for entry in export.layer_map(arch.vit_dims(config)):
        mask = _fused(flat, entry["flax"])
        if mask is None:
            continue
        try:
            export.check_nm_matrix(mask, pattern, entry["torch"])
        except ValueError:
            continue  # not of the pattern: counted dense
        out[entry["torch"]] = pattern
    return out


def _factored_macs(rep: arch.MacReport, config: Any, ranks: Mapping[str, int],
                   views: Mapping[str, tree.LayerView]) -> float:  # fmt: skip
    """``rep.total`` with every low-rank matrix run as two factor layers of rank ``r``."""
    rows = {r.name: r for r in rep.rows}
    total = rep.total
    for entry in export.layer_map(arch.vit_dims(config)):
        got = [p for p in entry["flax"] if p in ranks]
        if not got:
            continue
        tokens = rows[entry["torch"]].tokens  # low rank has no mask: the row counts dense
        for p in got:
            v = views[p]
            total += tokens * (min(ranks[p] * (v.d_out + v.d_in), v.d_out * v.d_in)
                               - v.d_out * v.d_in)  # fmt: skip
    return float(total)


def mac_summary(
    config: Any,
    masks: Any,
    pattern: str,
    tome_r: int = 0,
    *,
    ranks: Mapping[str, int] | None = None,
    views: Mapping[str, tree.LayerView] | None = None,
) -> MacSummary:
    """MACs per image, dense and as pruned, from the applied masks (and ToMe).

    Args:
      config: the ViT config.
      masks: the masks pytree the job applied.
      pattern: the job's pattern (``"unstructured"`` or ``"k:n"``).
      tome_r: ToMe merges per block.
      ranks: ``{flax kernel path: rank}`` of a low-rank job (its masks are empty).
      views: the pruned layers' views (needed with ``ranks``).

    Returns:
      A :class:`~mpjax.pipeline.report.MacSummary` in GMAC whose ``note`` says what was
      counted.
    """
    patterns = layer_patterns(masks, config, pattern)
    dense = arch.vit_macs(config)
    pruned = arch.vit_macs(config, patterns, tome_r=tome_r)
    linear = len(export.layer_map(arch.vit_dims(config)))
    factored = None
    if ranks:
        factored = _factored_macs(pruned, config, ranks, views or {}) / 1e9
        note = ("counted dense: low rank replaces each W by its rank-r approximation in "
                "place (the factors are not kept); as two factor layers per matrix it would "
                f"cost {factored:.6f} GMAC")  # fmt: skip
    elif pattern == "unstructured":
        note = "unstructured sparsity does not change MACs (no kernel skips scattered zeros)"
    else:
        note = (f"{len(patterns)} of {linear} linear layers run {pattern} (k/n of their MACs); "
                "the others count dense")  # fmt: skip
    if tome_r:
        note += f"; ToMe r={tome_r} runs later blocks on fewer tokens"
    return MacSummary(
        dense_gmac=dense.dense_total / 1e9,
        pruned_gmac=pruned.total / 1e9,
        reduction=1 - pruned.total / dense.dense_total,
        note=note,
        factored_gmac=factored,
    )
