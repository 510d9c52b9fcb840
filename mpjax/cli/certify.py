"""``mpjax certify DENSE PRUNED``: data-path certificates of a pruning step of an MLP.

Loads the two checkpoints (and optionally a mask), the sample set ``T``, runs
:func:`mpjax.certificates.certify_network` with the provable MLP Lipschitz bounds and prints
:func:`mpjax.certificates.format_report`. See ``docs/method/certificates.md``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np

from mpjax import certificates, data, npz, tree
from mpjax.cli.prune import DATASETS, canonical_data

PyTree = Any


def build_parser() -> argparse.ArgumentParser:
    """The ``mpjax certify`` argument parser."""
    ap = argparse.ArgumentParser(
        prog="mpjax certify",
        description=(
            "Data-path certificates (P26) of replacing layers of DENSE by those of PRUNED."
        ),
    )
    ap.add_argument("dense", help="dense checkpoint (mpjax params dir or any load_source source)")
    ap.add_argument("pruned", help="pruned checkpoint of the same architecture")
    ap.add_argument("--mask", help="checkpoint dir whose masks (True = kept) define the split")
    ap.add_argument("--data", default="fashion-mnist",
                    help="'fashion-mnist' (alias fmnist; test split) or an .npz with x, y")  # fmt: skip
    ap.add_argument("--layer", nargs="+", help="kernel paths (default: every changed matrix)")
    ap.add_argument("--l1", type=float, default=0.0, help="l1 strength of J")
    ap.add_argument("--l2", type=float, default=0.0, help="l2 strength of J")
    ap.add_argument("--samples", type=int, default=1000, help="size of the sample set T")
    ap.add_argument("--activation", help="MLP activation (default: checkpoint meta, else relu)")
    ap.add_argument("--normalize", help="'unit' or 'standard' pixels (default: meta, else unit)")
    return ap


def _load(source: str) -> tuple[PyTree, dict, PyTree | None]:
    """``(params, meta, masks)`` of a checkpoint read by :func:`mpjax.models.load_source`."""
    from mpjax.models import load_source  # the model loaders import flax: only when run

    params, info = load_source(source)
    return params, dict(info.meta or {}), info.masks


def _read_data(spec: str) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of ``--data``: the Fashion-MNIST test split or an ``.npz`` file."""
    if canonical_data(spec) == "fashion-mnist":
        return data.load_fashion_mnist("test")
    expected = "expected 'fashion-mnist' or an .npz file with arrays x (or images) and y (or labels)"
    if canonical_data(spec) in DATASETS.values():
        raise ValueError(f"--data {spec}: {expected}.")
    if not spec.endswith(".npz"):
        raise ValueError(f"--data {spec}: not an .npz file; {expected}.")
    try:
        arrays = npz.read_npz(spec, what="a data file")
        images = arrays["x"] if "x" in arrays else arrays["images"]
        labels = arrays["y"] if "y" in arrays else arrays["labels"]
    except (ValueError, KeyError, TypeError) as err:  # TypeError: an .npy named .npz
        raise ValueError(f"--data {spec}: {expected} ({str(err).rstrip('.')}).") from err
    return images, labels


def _data(
    arrays: tuple[np.ndarray, np.ndarray], spec: str, samples: int, normalize: str
) -> tuple[np.ndarray, np.ndarray]:
    """The sample set ``T``: the first ``samples`` flattened float32 images and int32 labels."""
    images, labels = arrays
    images, labels = images[:samples], np.asarray(labels[:samples]).astype(np.int32)
    if len(images) == 0:
        raise ValueError(f"--data {spec}: the file holds no samples; pass a non-empty file.")
    if images.dtype == np.uint8:
        mean, std = data.STATS["fashion-mnist"]
        images = data.normalize(images, normalize, mean, std)
    return np.asarray(images, np.float32).reshape(len(images), -1), labels


def _check_mask(pruned: PyTree, masks: PyTree, layers: Sequence[str]) -> None:
    """Check that removed weights (mask False) are zero in the pruned net: ``S o R = 0``."""
    flat_m, flat_p = tree.flatten(masks), tree.flatten(pruned)
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


def main(argv: list[str] | None = None) -> int:
    """``mpjax certify DENSE PRUNED [--mask DIR] --data fashion-mnist|PATH --layer PATH ...``.

    Prints ``B_T`` per layer, the elastic-net verdicts, the telescoped bound, the share of
    samples whose label is certified preserved, and whether each statement's hypotheses hold.

    Raises:
      ValueError: on a checkpoint that is not an MLP, a mask that does not fit the pruned
        checkpoint, ``--samples`` below 1, or unreadable / empty data (the message names
        the flag).
    """
    args = build_parser().parse_args(argv)
    if args.samples <= 0:
        raise ValueError(f"--samples {args.samples}: must be > 0.")
    arrays = _read_data(args.data)  # before the checkpoints: a bad --data fails fast
    dense, meta, _ = _load(args.dense)
    pruned, _, masks = _load(args.pruned)
    if args.mask:
        masks = _load(args.mask)[2]
        if masks is None:
            raise ValueError(f"--mask {args.mask}: the checkpoint holds no masks.")
    activation = args.activation or meta.get("activation", "relu")
    model = certificates.mlp_from_params(dense, activation)
    certificates.mlp_from_params(pruned, activation)
    changed = [
        p
        for p, w in tree.matrices(dense).items()
        if not np.array_equal(np.asarray(w), np.asarray(tree.matrices(pruned).get(p, w)))
    ]
    layers = args.layer or changed
    if masks is not None:
        _check_mask(pruned, masks, layers)
    x, y = _data(arrays, args.data, args.samples, args.normalize or meta.get("normalize", "unit"))

    def lipschitz(params: PyTree, path: str) -> tuple[float, bool]:
        return certificates.mlp_lipschitz_bound(params, path, activation)

    rep = certificates.certify_network(
        model, dense, pruned, x, y, layers, lipschitz, args.l1, args.l2
    )
    name = canonical_data(args.data)
    print(f"data: {name + ' (test split)' if name == 'fashion-mnist' else name}, {len(x)} samples")
    print(certificates.format_report(rep, args.l1, args.l2))
    return 0
