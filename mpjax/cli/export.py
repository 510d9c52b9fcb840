"""``mpjax export SOURCE --out DIR``: export a ViT (optionally N:M-pruned by magnitude) for the torch runtime.

The library side is :func:`mpjax.export.export_vit`; see `docs/method/runtime.md`.
"""

from __future__ import annotations

import argparse

from mpjax import arch


def build_parser() -> argparse.ArgumentParser:
    """The ``mpjax export`` argument parser."""
    ap = argparse.ArgumentParser(
        prog="mpjax export",
        description="``mpjax export``: export a ViT (optionally N:M-pruned by magnitude) "
        "for the torch runtime.",
    )
    ap.add_argument("source", help="models.load_source: vit-b16, orbax dir, .npz, ...")
    ap.add_argument("--out", required=True, help="export directory")
    ap.add_argument("--arch", default=None, help="ViT config (b16, l16, ...) if not inferable")
    ap.add_argument("--nm", default=None, help="prune block Linears by magnitude, e.g. 2:4")
    ap.add_argument("--pattern", default="2:4", help="pattern of the checkpoint's masks")
    ap.add_argument("--tome-r", type=int, default=0)
    ap.add_argument("--dtype", default="float32", choices=("float32", "float16"))
    return ap


def main(argv: list[str] | None = None) -> int:
    """Load SOURCE, optionally prune it N:M by magnitude, export it to ``--out`` and print a summary.

    Raises:
      ValueError: an unparsable ``--nm``, a ViT config that cannot be inferred (pass
        ``--arch``), or masks that do not fit ``--pattern``.
    """
    args = build_parser().parse_args(argv)
    prune_pattern = None
    if args.nm:
        try:
            prune_pattern = arch.parse_pattern(args.nm)
        except ValueError as err:
            raise ValueError(f"--nm: {err}") from None
    # The JAX side (model loaders, pruning, the export) is imported only when run.
    from mpjax import export, tree
    from mpjax.models import config_for, hf_to_flax, load_source, timm_to_flax
    from mpjax.pruning import nm_masks

    params, info = load_source(args.source)
    config = config_for(args.arch) if args.arch else info.config
    if config is None:
        raise ValueError(f"--arch: cannot infer the ViT config of {args.source}; pass e.g. b16.")
    if info.layout == "timm":
        params = timm_to_flax(params, config)
    elif info.layout == "hf":
        params = hf_to_flax(params, config)
    masks, pattern = info.masks, args.pattern
    if prune_pattern is not None:
        k, n = prune_pattern
        views = tree.select(params, include=["*encoderblock_*/*/kernel"])
        masks, pattern = nm_masks(params, k, n, views=views), args.nm
    man = export.export_vit(
        params, config, args.out, masks=masks, patterns=pattern, tome_r=args.tome_r,
        dtype=args.dtype,
    )  # fmt: skip
    n_sparse = sum(r["execution"] == "sparse" for r in man["layers"])
    print(
        f"exported to {args.out}: {len(man['layers'])} linear layers, {n_sparse} marked sparse; "
        f"{man['macs']['gmac']:.3f} GMAC, {100 * man['macs']['reduction']:.2f}% below dense"
    )
    return 0
