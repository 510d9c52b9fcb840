"""``mpjax export SOURCE --out DIR``: export a ViT (optionally N:M-pruned by magnitude) for the torch runtime.

The pattern of the masks and ToMe ``r`` come from the pruned checkpoint's metadata (what
``mpjax prune`` stored); ``--pattern`` and ``--tome`` override them. ``--out`` is checked
before any work (:func:`mpjax.cli.output.prepare_out`). The library side is
:func:`mpjax.export.export_vit`; see `docs/method/runtime.md`.
"""

from __future__ import annotations

import argparse
from typing import Any, NamedTuple

from mpjax import arch, export  # neither imports JAX
from mpjax.cli.output import add_overwrite_flag, cleaned_up_on_failure, prepare_out

#: ``--pattern`` value for masks without an N:M structure.
UNSTRUCTURED = "unstructured"
#: How errors name the ToMe flag and its alias.
TOME = "--tome (--tome-r)"


def build_parser() -> argparse.ArgumentParser:
    """The ``mpjax export`` argument parser."""
    ap = argparse.ArgumentParser(
        prog="mpjax export",
        description="``mpjax export``: export a ViT (optionally N:M-pruned by magnitude) "
        "for the torch runtime.",
    )
    ap.add_argument("source", help="models.load_source: vit-b16, shipped, orbax dir, .npz, ...")
    ap.add_argument("--out", required=True, help="export directory (new, empty or an export)")
    add_overwrite_flag(ap)
    ap.add_argument("--arch", default=None, help="ViT config (b16, l16, ...) if not inferable")
    ap.add_argument("--nm", default=None, help="prune block Linears by magnitude, e.g. 2:4")
    ap.add_argument(
        "--pattern", default=None,
        help="pattern of the checkpoint's masks, K:N or 'unstructured' (default: the "
        "checkpoint's metadata, else 2:4 where the masks fit it)",
    )  # fmt: skip
    ap.add_argument(
        "--tome", "--tome-r", dest="tome", type=int, default=None,
        help="ToMe merges per block (default: the checkpoint's metadata, else 0)",
    )  # fmt: skip
    ap.add_argument("--dtype", default="float32", choices=("float32", "float16"))
    return ap


def _check_flags(args: argparse.Namespace) -> None:
    """Validate the flags that need no model (before ``--out`` and loading)."""
    for flag, value in (("--nm", args.nm), ("--pattern", args.pattern)):
        if value is None or (flag == "--pattern" and value == UNSTRUCTURED):
            continue
        try:
            arch.parse_pattern(value)
        except ValueError as err:
            raise ValueError(f"{flag}: {err}") from None
    if args.tome is not None and args.tome < 0:
        raise ValueError(f"{TOME}: {args.tome}; pass merges per block >= 0 (0 = no ToMe).")


def _recorded(meta: Any, key: str) -> Any:
    """``key`` of the prune job recorded in an orbax checkpoint's metadata (or ``None``)."""
    for part in ("job", "result"):
        record = meta.get(part) if isinstance(meta, dict) else None
        if isinstance(record, dict) and record.get(key) is not None:
            return record[key]
    return None


class Settings(NamedTuple):
    """What ``mpjax export`` passes to :func:`~mpjax.export.export_vit`, and from where."""

    patterns: str | None  # "K:N", "auto" (2:4 where the masks fit it) or None (unstructured)
    tome_r: int
    origin: str  # e.g. "pattern: the checkpoint's metadata; ToMe r: --tome"


def resolve_settings(args: argparse.Namespace, masks: Any, meta: Any) -> Settings:
    """The masks' pattern and ToMe ``r``: flags first, then the checkpoint's metadata.

    ``--nm`` (masks made here) and ``--pattern`` win over the pattern of the prune job
    recorded in the checkpoint; masks with neither get ``"auto"`` (2:4 where they fit it,
    unstructured elsewhere). ``--tome`` wins over the recorded ToMe ``r``, else 0.

    Raises:
      ValueError: a recorded ``tome_r`` that is not an int ``>= 0`` (pass ``--tome``).
    """
    meta_said = "the checkpoint's metadata"
    pattern, pattern_from = args.nm or args.pattern, "--nm" if args.nm else "--pattern"
    if masks is None and not args.nm:
        pattern_from = "none (no masks)"
    elif pattern is None:
        pattern, pattern_from = _recorded(meta, "pattern"), meta_said
        if pattern is None:
            pattern, pattern_from = "auto", "the masks (2:4 where they fit it)"
    tome, tome_from = args.tome, "--tome"
    if tome is None:
        tome, tome_from = _recorded(meta, "tome_r"), meta_said
        if tome is None:
            tome, tome_from = 0, "default"
    if not isinstance(tome, int) or isinstance(tome, bool) or tome < 0:
        raise ValueError(f"{TOME}: the checkpoint records tome_r={tome!r}; pass --tome R.")
    origin = f"pattern: {pattern_from}; ToMe r: {tome_from}"
    return Settings(None if pattern == UNSTRUCTURED else pattern, tome, origin)


def main(argv: list[str] | None = None) -> int:
    """Load SOURCE, optionally prune it N:M by magnitude, export it to ``--out`` and print a summary.

    Raises:
      ValueError: an unparsable ``--nm`` / ``--pattern``, a negative ``--tome``, a bad
        ``--out``, a ViT config that cannot be inferred (pass ``--arch``), or masks that do
        not fit ``--pattern``.
    """
    args = build_parser().parse_args(argv)
    _check_flags(args)
    # An export directory from before the marker counts as an earlier run of this command.
    out = prepare_out(
        args.out, command="export", overwrite=args.overwrite,
        own=lambda path: bool(export.owned_files(path)),
    )  # fmt: skip
    with cleaned_up_on_failure(out):
        man, settings = _run(args)
    n_sparse = sum(r["execution"] == "sparse" for r in man["layers"])
    print(
        f"exported to {args.out}: {len(man['layers'])} linear layers, {n_sparse} marked sparse; "
        f"{man['macs']['gmac']:.3f} GMAC, {100 * man['macs']['reduction']:.2f}% below dense"
    )
    print(f"pattern {man['pattern']}, ToMe r={man['tome_r']} ({settings.origin})")
    return 0


def _run(args: argparse.Namespace) -> tuple[dict[str, Any], Settings]:
    """Load, optionally prune, resolve the settings and export; ``(manifest, settings)``."""
    # The JAX side (model loaders, pruning) is imported only when run.
    from mpjax import tree
    from mpjax.models import config_for, hf_to_flax, load_source, timm_to_flax
    from mpjax.pruning import nm_masks

    params, info = load_source(args.source)
    try:
        config = config_for(args.arch) if args.arch else info.config
    except ValueError as err:
        raise ValueError(f"--arch: {err}") from None
    if config is None:
        raise ValueError(f"--arch: cannot infer the ViT config of {args.source}; pass e.g. b16.")
    if info.layout == "timm":
        params = timm_to_flax(params, config)
    elif info.layout == "hf":
        params = hf_to_flax(params, config)
    masks = info.masks
    if args.nm:
        k, n = arch.parse_pattern(args.nm)
        views = tree.select(params, include=["*encoderblock_*/*/kernel"])
        masks = nm_masks(params, k, n, views=views)
    settings = resolve_settings(args, masks, info.meta)
    most = (arch.vit_dims(config).tokens - 1) // 2
    if args.tome is not None and args.tome > most:
        raise ValueError(f"{TOME}: {args.tome}; this ViT merges at most {most} tokens per block.")
    try:
        man = export.export_vit(
            params, config, args.out, masks=masks, patterns=settings.patterns,
            tome_r=settings.tome_r, dtype=args.dtype, overwrite=args.overwrite,
        )  # fmt: skip
    except FileExistsError as err:
        raise ValueError(f"--out: {err}") from None
    except export.MaskPatternError as err:
        said = args.pattern or f"{settings.patterns} (the checkpoint's metadata)"
        raise ValueError(
            f"--pattern {said}: the masks do not fit it ({str(err).split('; re-project')[0]}); pass the "
            f"pattern they were pruned with or --pattern {UNSTRUCTURED}."
        ) from None
    return man, settings
