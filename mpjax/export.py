"""Export a (pruned) Flax ViT for the PyTorch runtime: timm-layout safetensors + a manifest.

An export directory holds

* ``model.safetensors``: weights in timm names and layout (``blocks.{i}.attn.qkv.weight``
  (3D, D) fused from big_vision's query/key/value kernels, ...), masks already applied;
* ``masks.safetensors`` (when masks are given): bool masks ``(d_out, d_in)`` under the same
  weight names, plus ``<layer>.perm`` int64 input permutations when some were baked in;
* ``manifest.json``: schema version, model config, ToMe ``r``, dtype, the layer map
  (Flax path(s) <-> torch name), every layer's pattern and execution plan (``"sparse"`` for
  2:4 layers that meet the kernel's shape rules, ``"dense"`` with the reason otherwise), the
  overall ``pattern`` and ``sparse_2_4`` (does any layer run on the 2:4 kernel), MAC
  accounting (:mod:`mpjax.arch.macs`), each safetensors file's sha256 and
  ``content_sha256`` over every other field (:func:`manifest_digest`): an edited
  configuration (heads, ToMe ``r``, ...) is refused by the runtime.

An export never deletes or overwrites a file it did not write: a file under one of these
names is replaced only when the directory's manifest (or the journal of an interrupted
export) lists it with its sha256, unless ``overwrite=True``. ``mpjax export``
(:mod:`mpjax.cli.export`) calls :func:`export_vit`; see `docs/method/runtime.md`.

Sparse execution rule (torch ``SparseSemiStructuredTensorCUSPARSELT._DTYPE_SHAPE_CONSTRAINTS``):
fp16/bf16 weights whose rows and columns are ``>= 16`` and multiples of 16, 2:4 along
``d_in``; CUTLASS needs multiples of (32, 64), also recorded. Wider patterns (6:12, 8:16,
12:16) are exported, counted at ``k/n`` of their MACs, and run dense.

This module imports neither JAX nor torch at import time (only :mod:`mpjax.arch`);
:func:`to_timm` and :func:`export_vit` import the JAX side when called.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mpjax import arch

SCHEMA = "mpjax-export"
#: Version 2 added ``content_sha256`` (the configuration is verified), ``pattern`` and
#: ``sparse_2_4``; the runtime reads exactly this version.
SCHEMA_VERSION = 2
WEIGHTS_FILE, MASKS_FILE, MANIFEST_FILE = "model.safetensors", "masks.safetensors", "manifest.json"
#: Lists the files an export is moving into place; removed once the manifest is written.
JOURNAL_FILE = ".mpjax-export-pending.json"

#: The runtime's rules for 2:4 execution, recorded in every manifest.
RUNTIME_RULES = {
    "pattern": "2:4", "backend": "cusparselt", "dtypes": ["float16", "bfloat16"],
    "rows_multiple": 16, "cols_multiple": 16, "cutlass_rows_multiple": 32,
    "cutlass_cols_multiple": 64,
    "source": "torch.sparse.SparseSemiStructuredTensorCUSPARSELT._DTYPE_SHAPE_CONSTRAINTS",
}  # fmt: skip

_ATT = "Transformer/encoderblock_{i}/MultiHeadDotProductAttention_0"
_MLP = "Transformer/encoderblock_{i}/MlpBlock_0"


def semi_structured_eligible(d_out: int, d_in: int, dtype: str = "float16") -> tuple[bool, str]:
    """Whether a ``(d_out, d_in)`` weight can run on the cuSPARSELt 2:4 kernel.

    Returns:
      ``(ok, reason)``; ``reason`` explains a refusal (empty when ``ok``).
    """
    r, c = RUNTIME_RULES["rows_multiple"], RUNTIME_RULES["cols_multiple"]
    if dtype not in RUNTIME_RULES["dtypes"]:
        return False, f"dtype {dtype} has no 2:4 kernel here (use float16 or bfloat16)"
    if d_out < r or d_out % r or d_in < c or d_in % c:
        return False, (
            f"shape ({d_out}, {d_in}) is not a multiple of ({r}, {c}) as cuSPARSELt requires"
        )
    return True, ""


def layer_map(dims: arch.ViTDims) -> list[dict[str, Any]]:
    """The linear layers of a big_vision ViT: ``[{torch, flax: [paths], layer_type}]``."""

    def row(torch: str, layer_type: str, *flax: str) -> dict[str, Any]:
        return {"torch": torch, "flax": list(flax), "layer_type": layer_type}

    out = [row("patch_embed.proj", "patch_embed", "embedding/kernel")]
    for i in range(dims.layers):
        att, mlp = _ATT.format(i=i), _MLP.format(i=i)
        out += [
            row(
                f"blocks.{i}.attn.qkv",
                "qkv",
                *(f"{att}/{n}/kernel" for n in ("query", "key", "value")),
            ),
            row(f"blocks.{i}.attn.proj", "proj", f"{att}/out/kernel"),
            row(f"blocks.{i}.mlp.fc1", "fc1", f"{mlp}/Dense_0/kernel"),
            row(f"blocks.{i}.mlp.fc2", "fc2", f"{mlp}/Dense_1/kernel"),
        ]
    return out + [row("head", "head", "head/kernel")]


def _flat(params: Any) -> dict[str, np.ndarray]:
    from mpjax import tree

    params = params.get("params", params) if isinstance(params, Mapping) else params
    return {p: np.asarray(v) for p, v in tree.flatten(params).items()}


def _matrix(leaf: np.ndarray, path: str) -> np.ndarray:
    from mpjax import tree

    return np.asarray(tree.to_matrix(leaf, tree.view_of(path, leaf.shape)))


def to_timm(params: Any, config: Any) -> dict[str, np.ndarray]:
    """timm-layout numpy state dict of a big_vision-named Flax ViT.

    Thin wrapper over :func:`mpjax.models.convert.flax_to_timm` (q/k/v fused into ``qkv``),
    accepting ``{"params": ...}`` or the inner dict.
    """
    from mpjax.models import flax_to_timm

    inner = params.get("params", params) if isinstance(params, Mapping) else params
    return {k: np.ascontiguousarray(np.asarray(v)) for k, v in flax_to_timm(inner, config).items()}


def _pattern_of(patterns: Any, entry: Mapping[str, Any], mask: np.ndarray) -> str | None:
    if patterns == "auto":  # 2:4 where the mask fits it, else unstructured
        try:
            check_nm_matrix(mask, RUNTIME_RULES["pattern"], entry["torch"])
        except ValueError:
            return None
        return RUNTIME_RULES["pattern"]
    if patterns is None or isinstance(patterns, str):
        return patterns
    for key in (entry["torch"], entry["layer_type"], *entry["flax"]):
        if key in patterns:
            return patterns[key]
    return None


class MaskPatternError(ValueError):
    """A mask that does not have the N:M pattern it is said to have."""


def check_nm_matrix(mask: np.ndarray, pattern: str, name: str) -> float:
    """Raise :class:`MaskPatternError` unless every group of ``n`` along ``d_in`` keeps at most ``k``.

    Returns:
      The kept fraction of the mask.
    """
    # An export also describes layers it leaves dense, so k == n (and "dense") are accepted.
    k, n = arch.parse_pattern(pattern, allow_dense=True)
    if mask.shape[1] % n:
        raise MaskPatternError(
            f"{name}: d_in={mask.shape[1]} is not divisible by n={n} of {pattern}."
        )
    counts = mask.reshape(mask.shape[0], -1, n).sum(-1)
    bad = np.argwhere(counts > k)
    if bad.size:
        i, g = bad[0]
        raise MaskPatternError(
            f"{name}: mask is not {pattern} along d_in: row {i}, group {g} keeps "
            f"{counts[i, g]} of {n} ({len(bad)} bad groups); re-project it."
        )
    return float(mask.mean())


def _layer_masks(flat_masks: Mapping[str, np.ndarray], entry: Mapping[str, Any]):
    got = [p for p in entry["flax"] if p in flat_masks]
    if not got:
        return None
    if len(got) != len(entry["flax"]):
        raise ValueError(
            f"{entry['torch']}: masks for {got} but not for all of {entry['flax']}; "
            "query/key/value share one fused qkv weight, mask all three or none."
        )
    return np.concatenate([_matrix(flat_masks[p].astype(bool), p) for p in got])


def plan_layers(
    dims: arch.ViTDims,
    flat_masks: Mapping[str, np.ndarray],
    patterns: str | Mapping[str, str | None] | None,
    permutations: Mapping[str, np.ndarray],
) -> list[dict[str, Any]]:
    """The manifest's layer entries: pattern, density and execution plan per linear layer.

    A layer runs ``"sparse"`` only if it is masked, its pattern is exactly 2:4, every group
    of 4 inputs keeps at most 2 and its shape passes :func:`semi_structured_eligible`;
    otherwise it runs ``"dense"`` and ``reason`` says why. ``patterns="auto"`` gives each
    masked layer 2:4 where its mask fits 2:4 and marks it unstructured otherwise.

    Raises:
      ValueError: a mask that does not fit its pattern, or partial q/k/v masks.
    """
    layers = []
    for entry in layer_map(dims):
        mask = _layer_masks(flat_masks, entry)
        pattern = _pattern_of(patterns, entry, mask) if mask is not None else None
        row = dict(entry, pattern=pattern, density=1.0, execution="dense", reason="not pruned",
                   masked=mask is not None, permutation=None)  # fmt: skip
        if mask is not None:
            if pattern is None:
                row["density"], row["reason"] = float(mask.mean()), "unstructured mask"
            else:
                row["density"] = check_nm_matrix(mask, pattern, entry["torch"])
                ok, why = semi_structured_eligible(*mask.shape)
                if entry["layer_type"] == "patch_embed":
                    row["reason"] = "the convolution stem runs dense"
                elif pattern != RUNTIME_RULES["pattern"]:
                    row["reason"] = f"pattern {pattern} has no sparse kernel (2:4 only)"
                elif not ok:
                    row["reason"] = why
                else:
                    row["execution"], row["reason"] = "sparse", None
        for p in entry["flax"]:
            if p in permutations:
                row["permutation"] = {"key": f"{entry['torch']}.perm", "baked": True, "flax": p}
        layers.append(row)
    return layers


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 of a manifest's canonical JSON, every field but ``content_sha256`` itself.

    Canonical: keys sorted, no whitespace, so the digest of the dict written and of the
    dict read back agree. The runtime recomputes it and refuses a manifest whose
    configuration (heads, ToMe ``r``, layer plan, ...) was edited after export.
    """
    body = {k: v for k, v in manifest.items() if k != "content_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def owned_files(directory: str | os.PathLike) -> dict[str, str | None]:
    """The files of ``directory`` that an earlier export wrote: ``{name: sha256 | None}``.

    Read from the directory's manifest (when it is an mpjax export) and from the journal of
    an interrupted export; the manifest itself maps to ``None`` (recognised by its schema).
    Empty when the directory holds no export.
    """
    out: dict[str, str | None] = {}
    for name in (MANIFEST_FILE, JOURNAL_FILE):
        try:
            record = json.loads((Path(directory) / name).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict) or record.get("schema") != SCHEMA:
            continue
        out[name] = None
        for info in (record.get("files") or {}).values():
            if isinstance(info, dict) and isinstance(info.get("path"), str):
                out[Path(info["path"]).name] = info.get("sha256")
    return out


def _is_ours(file: Path, owned: Mapping[str, str | None]) -> bool:
    if file.is_symlink() or not file.is_file() or file.name not in owned:
        return False
    return owned[file.name] is None or file_sha256(file) == owned[file.name]


def _claim(out: Path, names: Sequence[str], overwrite: bool) -> dict[str, str | None]:
    """Check, before any work, that the export may write files ``names`` into ``out``.

    Raises:
      ValueError: ``out`` is (or lies under) a regular file.
      FileExistsError: a file under an export's name that no earlier export wrote.
    """
    if any(d.exists() and not d.is_dir() for d in (out, *out.parents)):
        raise ValueError(f"directory: {out} is or lies under a regular file; export elsewhere.")
    owned = owned_files(out) if out.is_dir() else {}
    for name in (*names, JOURNAL_FILE):
        file = out / name
        if (file.exists() or file.is_symlink()) and not overwrite and not _is_ours(file, owned):
            raise FileExistsError(
                f"{file} exists and was not written by an mpjax export; pass overwrite=True "
                "(mpjax export --overwrite) to replace it, or export elsewhere."
            )
    return owned


def _config_dict(config: Any, dims: arch.ViTDims) -> dict[str, Any]:
    get = config.get if isinstance(config, Mapping) else lambda k, d=None: getattr(config, k, d)
    # mpjax.models.vit (like timm) uses exact GELU and LayerNorm eps 1e-6 unless told otherwise.
    approx = get("gelu_approximate", False)
    eps = next((get(k) for k in ("layernorm_eps", "ln_eps", "layer_norm_eps") if get(k)), 1e-6)
    return dict(
        dataclasses.asdict(dims),
        ln_eps=float(eps),
        gelu_approximate="tanh" if approx in (True, "tanh") else "none",
        pool="tok",
    )


def _torch_layout(mask: np.ndarray, row: Mapping[str, Any], shape: tuple[int, ...]) -> np.ndarray:
    """A matrix-view mask in the torch tensor's layout (conv stem: (cout, cin, kh, kw))."""
    if row["layer_type"] == "patch_embed":
        cout, cin, kh, kw = shape
        return mask.reshape(cout, kh, kw, cin).transpose(0, 3, 1, 2)
    return mask.reshape(shape)


def export_vit(
    params: Any,
    config: Any,
    directory: str | os.PathLike,
    masks: Any = None,
    patterns: str | Mapping[str, str | None] | None = "2:4",
    permutations: Mapping[str, Any] | None = None,
    tome_r: int | Sequence[int] = 0,
    dtype: str = "float32",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``model.safetensors``, ``masks.safetensors`` and ``manifest.json`` to ``directory``.

    Args:
      params: big_vision-named Flax ViT params (``{"params": ...}`` or the inner dict).
      config: the ViT config (``mpjax.models.vit.ViTConfig`` or a preset name like ``"b16"``).
      directory: output folder (created); files are written atomically, manifest last.
      masks: masks pytree (bool leaves, ``None`` where not pruned) or None.
      patterns: ``"k:n"`` for every masked layer, or ``{torch name | layer type | flax path:
        "k:n" | None}``; ``None`` marks an unstructured mask (executed and counted dense:
        no kernel here exploits it); ``"auto"``: 2:4 where a mask fits it, else unstructured.
      permutations: ``{flax kernel path: perm}`` of input permutations already baked into
        ``params`` (recorded for provenance; the runtime needs nothing to undo them).
      tome_r: ToMe merges per block the runtime should use (an int or one int per block).
      dtype: ``"float32"`` or ``"float16"`` storage dtype.
      overwrite: replace files under the export's names that no earlier export wrote.
        Without it they are refused; a foreign file is never deleted either way.

    Returns:
      The manifest (also written as JSON).

    Raises:
      ValueError: masks that do not fit their pattern, partial q/k/v masks, bad dtype/perms,
        ``directory`` under a regular file.
      FileExistsError: a file under an export's name in ``directory`` that no export wrote
        (checked before any work).
    """
    from safetensors.numpy import save_file

    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype: {dtype!r}; export as 'float32' or 'float16'.")
    out = Path(directory)
    has_masks = masks is not None or bool(permutations)
    owned = _claim(out, (WEIGHTS_FILE, MANIFEST_FILE, *[MASKS_FILE] * has_masks), overwrite)
    dims = arch.vit_dims(config)
    rs = arch.per_block_r(tome_r, dims.layers)
    flat_masks = {} if masks is None else _flat(masks)
    permutations = {p: np.asarray(v, np.int64) for p, v in (permutations or {}).items()}
    layers = plan_layers(dims, flat_masks, patterns, permutations)
    sd = to_timm(params, config)
    mask_sd: dict[str, np.ndarray] = {}
    for row in layers:
        key = f"{row['torch']}.weight"
        row["shape"] = [sd[key].shape[0], int(np.prod(sd[key].shape[1:]))]
        if row["masked"]:
            mask = _torch_layout(_layer_masks(flat_masks, row), row, sd[key].shape)
            sd[key] = sd[key] * mask
            mask_sd[key] = np.ascontiguousarray(mask)
        if row["permutation"]:
            perm = permutations[row["permutation"]["flax"]]
            if sorted(perm.tolist()) != list(range(d_in := sd[key].shape[1])):
                flax = row["permutation"]["flax"]
                raise ValueError(f"permutations[{flax}]: not a permutation of range({d_in}).")
            mask_sd[row["permutation"]["key"]] = perm
    sd = {k: v.astype(dtype) for k, v in sd.items()}
    rep = arch.vit_macs(dims, {r["torch"]: r["pattern"] for r in layers if r["pattern"]}, tome_r)
    per_layer = {r.name: r.macs for r in rep.rows}
    for row in layers:
        row["macs"] = per_layer[row["torch"]]
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as tmp:
        files = _write_tensors(tmp, {"weights": sd, "masks": mask_sd}, save_file)
        manifest = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "model": {"arch": "vit", "config": _config_dict(config, dims), "input_layout": "NCHW"},
            "dtype": dtype,
            "tome_r": tome_r if isinstance(tome_r, int) else list(rs),
            "pattern": _overall_pattern(layers),
            "sparse_2_4": any(r["execution"] == "sparse" for r in layers),
            "files": files,
            "runtime_rules": RUNTIME_RULES,
            "layers": layers,
            "macs": {k: v for k, v in rep.as_dict().items() if k != "rows"},
        }
        manifest = json.loads(json.dumps(manifest))  # the form a reader sees (lists, floats)
        manifest["content_sha256"] = manifest_digest(manifest)
        with open(os.path.join(tmp, MANIFEST_FILE), "w") as f:
            json.dump(manifest, f, indent=1)
        _move_into_place(Path(tmp), out, files, owned)
    return manifest


def _write_tensors(tmp: str, groups: Mapping[str, Mapping[str, np.ndarray]], save_file):
    """Save each non-empty group as safetensors in ``tmp``; the manifest's ``files`` entry."""
    files = {}
    for (label, tensors), name in zip(groups.items(), (WEIGHTS_FILE, MASKS_FILE), strict=True):
        if tensors:
            save_file(dict(tensors), path := os.path.join(tmp, name))
            files[label] = {"path": name, "sha256": file_sha256(path),
                            "bytes": os.path.getsize(path)}  # fmt: skip
    return files


def _overall_pattern(layers: Sequence[Mapping[str, Any]]) -> str:
    """``"dense"``, the one pattern of all masked layers (or ``"unstructured"``), or ``"mixed"``."""
    found = {r["pattern"] or "unstructured" for r in layers if r["masked"]}
    return "dense" if not found else found.pop() if len(found) == 1 else "mixed"


def _move_into_place(tmp: Path, out: Path, files: Mapping[str, Any], owned) -> None:
    """Replace the export's files, manifest last, under a journal naming them.

    The journal lets a rerun recognise files an interrupted export already moved in. A
    ``masks.safetensors`` of an earlier export that this one does not replace is removed
    only if that export wrote it; a foreign file is left alone (the manifest does not list it).
    """
    journal = out / JOURNAL_FILE
    with open(journal, "w") as f:
        json.dump({"schema": SCHEMA, "files": dict(files)}, f)
    stale = out / MASKS_FILE
    if "masks" not in files and _is_ours(stale, owned):
        stale.unlink()
    for name in (WEIGHTS_FILE, MASKS_FILE, MANIFEST_FILE):
        if (tmp / name).exists():
            os.chmod(tmp / name, 0o644)
            os.replace(tmp / name, out / name)
    journal.unlink()
