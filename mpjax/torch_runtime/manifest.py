"""Load and validate an mpjax export (:mod:`mpjax.export`) and rebuild it as a torch ViT.

Validation is strict and early; every failure is a :class:`ManifestError` (a ``ValueError``)
whose message names the file or layer and what to do:

* schema name and version (older and newer versions are refused), required keys and their
  types;
* ``content_sha256`` over every other field of the manifest: an edited configuration
  (heads, ToMe ``r``, LayerNorm epsilon, patch size, the layer plan, ...) is refused, since
  most of it cannot be seen in the weights' shapes;
* the config's values the runtime interprets (GELU form, pooling, input layout, epsilon)
  and the storage dtype of the weights;
* the sha256 of every safetensors file against the manifest (tampered or truncated files);
* every tensor's name and shape against the ViT the config describes;
* every masked layer's mask against its pattern (at most ``k`` kept in each group of ``n``
  along ``d_in``), weights zero wherever the mask is False;
* every layer marked ``"sparse"``: pattern exactly 2:4 and a shape the kernel accepts;
* baked permutations are permutations of ``range(d_in)``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, NamedTuple

import torch

from mpjax import arch, export
from mpjax.torch_runtime import sparse as sparse_mod
from mpjax.torch_runtime.vit import TorchViT


class ManifestError(ValueError):
    """An export directory that the runtime refuses to load."""


class Export(NamedTuple):
    """A validated export: manifest, timm state dict, masks, and the model sizes."""

    manifest: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    dims: arch.ViTDims


_REQUIRED = {
    "schema": str,
    "schema_version": int,
    "model": dict,
    "dtype": str,
    "tome_r": (int, list),
    "files": dict,
    "layers": list,
    "content_sha256": str,
}


def read_manifest(directory: str | Path, verify_hashes: bool = True) -> dict[str, Any]:
    """Parse ``manifest.json`` and check its schema and the files' sha256.

    Raises:
      ManifestError: missing/garbled manifest, wrong schema or version, hash mismatch.
    """
    path = Path(directory) / export.MANIFEST_FILE
    if not path.exists():
        raise ManifestError(f"{path}: no manifest; run mpjax.export.export_vit into {directory}.")
    try:
        man = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ManifestError(f"{path}: not valid JSON ({err}); re-export.") from None
    if not isinstance(man, dict):
        raise ManifestError(f"{path}: not a JSON object; re-export.")
    if man.get("schema") != export.SCHEMA:
        raise ManifestError(f"{path}: schema {man.get('schema')!r}, expected {export.SCHEMA!r}.")
    _check_version(path, man.get("schema_version"))
    for key, typ in _REQUIRED.items():
        if not isinstance(man.get(key), typ):
            raise ManifestError(f"{path}: field {key!r} missing or not {typ}; re-export.")
    if export.manifest_digest(man) != man["content_sha256"]:
        raise ManifestError(
            f"{path}: content_sha256 does not match the manifest's fields; the configuration "
            "(heads, tome_r, layers, ...) was edited after export. Re-export; do not load it."
        )
    if "weights" not in man["files"]:
        raise ManifestError(f"{path}: files.weights missing; re-export.")
    for label, info in man["files"].items():
        if not isinstance(info, dict) or Path(str(info.get("path"))).name != info.get("path"):
            raise ManifestError(f"{path}: files.{label} must name a file inside the export.")
        file = Path(directory) / info["path"]
        if not file.exists():
            raise ManifestError(f"{file}: listed in the manifest ({label}) but missing.")
        if verify_hashes and export.file_sha256(file) != info["sha256"]:
            raise ManifestError(
                f"{file}: sha256 does not match the manifest; the file was changed "
                "or truncated after export. Re-export; do not load it."
            )
    return man


def _check_version(path: Path, version: Any) -> None:
    want = export.SCHEMA_VERSION
    if not isinstance(version, int) or isinstance(version, bool):
        raise ManifestError(f"{path}: schema_version {version!r} is not an integer; re-export.")
    if version < want:
        raise ManifestError(
            f"{path}: schema_version {version} is older than the {want} this runtime reads "
            "(its configuration is not verified); re-export with this mpjax version."
        )
    if version > want:
        raise ManifestError(
            f"{path}: schema_version {version} is newer than the {want} this runtime reads; "
            "upgrade mpjax to load it."
        )


#: Values of the manifest's ``model`` the runtime interprets, and what it accepts.
_MODEL_VALUES = {
    ("config", "gelu_approximate"): ("none", "tanh"),
    ("config", "pool"): ("tok",),
    ("input_layout",): ("NCHW",),
}


def _check_model(man: dict[str, Any]) -> None:
    for keys, allowed in _MODEL_VALUES.items():
        value = man["model"]
        for k in keys:
            value = value.get(k) if isinstance(value, dict) else None
        if value not in allowed:
            field = ".".join(("model", *keys))
            raise ManifestError(f"manifest {field}: {value!r}; this runtime runs {allowed}.")
    eps = man["model"].get("config", {}).get("ln_eps")
    if not isinstance(eps, float) or not 0 < eps < 1:
        raise ManifestError(f"manifest model.config.ln_eps: {eps!r}; need a float in (0, 1).")
    if man["dtype"] not in ("float32", "float16"):
        raise ManifestError(f"manifest dtype: {man['dtype']!r}; exports are float32 or float16.")


def _dims(man: dict[str, Any]) -> arch.ViTDims:
    cfg = man["model"].get("config", {})
    fields = [f.name for f in dataclasses.fields(arch.ViTDims)]
    missing = [f for f in fields if not isinstance(cfg.get(f), int)]
    if missing:
        raise ManifestError(f"manifest model.config: missing integer fields {missing}; re-export.")
    return arch.ViTDims(**{f: cfg[f] for f in fields})


def _check_tensors(sd: dict[str, torch.Tensor], model: TorchViT, dtype: str) -> None:
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing, extra = sorted(set(want) - set(sd)), sorted(set(sd) - set(want))
    if missing or extra:
        raise ManifestError(
            f"{export.WEIGHTS_FILE}: tensors missing {missing[:3]} / unexpected "
            f"{extra[:3]} for the manifest's config; re-export."
        )
    for k, shape in want.items():
        if tuple(sd[k].shape) != shape:
            raise ManifestError(
                f"{export.WEIGHTS_FILE}: {k} has shape {tuple(sd[k].shape)}, the "
                f"config needs {shape}; manifest and weights disagree."
            )
        if sd[k].dtype != getattr(torch, dtype):
            raise ManifestError(
                f"{export.WEIGHTS_FILE}: {k} is {sd[k].dtype}, the manifest says {dtype}; re-export."
            )


def _check_layer(row: dict[str, Any], sd, masks) -> None:
    name, key = row["torch"], f"{row['torch']}.weight"
    if row.get("masked"):
        if key not in masks:
            raise ManifestError(f"{name}: marked masked but {export.MASKS_FILE} has no {key}.")
        mask = masks[key].reshape(masks[key].shape[0], -1)
        # A conv stem's groups run along Flax's (kh, kw, cin) order, not torch's: checked at export.
        if row.get("pattern") and masks[key].ndim == 2:
            try:
                export.check_nm_matrix(mask.numpy(), row["pattern"], name)
            except ValueError as err:
                raise ManifestError(str(err)) from None
        if bool((sd[key].reshape(mask.shape)[~mask.bool()] != 0).any()):
            raise ManifestError(f"{name}: weight is non-zero where its mask is False; re-export.")
    if row.get("execution") == "sparse":
        ok, why = export.semi_structured_eligible(*sd[key].reshape(sd[key].shape[0], -1).shape)
        if row.get("pattern") != "2:4" or not row.get("masked") or not ok:
            raise ManifestError(
                f"{name}: marked sparse but pattern={row.get('pattern')!r}, "
                f"masked={row.get('masked')} {why}; only masked 2:4 layers with "
                "kernel-compatible shapes may run sparse."
            )
        try:
            sparse_mod.check_nm(sd[key], name)
        except ValueError as err:
            raise ManifestError(str(err)) from None
    perm = row.get("permutation")
    if perm:
        p = masks.get(perm["key"])
        if p is None or sorted(p.tolist()) != list(range(sd[key].shape[1])):
            raise ManifestError(
                f"{name}: permutation {perm['key']} missing or not a permutation "
                f"of range({sd[key].shape[1]})."
            )


def load_export(directory: str | Path, verify_hashes: bool = True) -> Export:
    """Read and fully validate an export directory (see the module docstring)."""
    from safetensors.torch import load_file

    man = read_manifest(directory, verify_hashes)
    _check_model(man)
    dims = _dims(man)
    try:
        arch.per_block_r(man["tome_r"], dims.layers)
    except (ValueError, TypeError) as err:
        raise ManifestError(f"manifest tome_r: {err}") from None
    sd = load_file(str(Path(directory) / man["files"]["weights"]["path"]))
    masks = {}
    if "masks" in man["files"]:
        masks = load_file(str(Path(directory) / man["files"]["masks"]["path"]))
    cfg = man["model"]["config"]
    with torch.device("meta"):
        skeleton = TorchViT(dims, cfg.get("ln_eps", 1e-6), cfg.get("gelu_approximate", "none"))
    _check_tensors(sd, skeleton, man["dtype"])
    for row in man["layers"]:
        if not isinstance(row, dict) or f"{row.get('torch')}.weight" not in sd:
            raise ManifestError(f"manifest layers: entry {row!r} names no weight; re-export.")
        _check_layer(row, sd, masks)
    return Export(man, sd, masks, dims)


def sparse_layers(man: dict[str, Any]) -> list[str]:
    """timm names of the layers the manifest marks for 2:4 execution."""
    return [r["torch"] for r in man["layers"] if r.get("execution") == "sparse"]


def build_model(
    source: str | Path | Export,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    backend: str = "dense",
    tome_r: int | list[int] | None = None,
    **sparse_kwargs,
) -> TorchViT:
    """A :class:`TorchViT` in eval mode holding an export's weights.

    Args:
      source: export directory or a loaded :class:`Export`.
      dtype: compute dtype (float32 for parity; float16/bfloat16 for the GPU runtime).
      device: target device.
      backend: ``"dense"`` (masked weights, dense GEMMs), ``"cslt"`` or ``"wrapper"`` (2:4
        kernels on the layers marked sparse; needs CUDA, fp16/bf16 and an export with at
        least one such layer: ``manifest["sparse_2_4"]``).
      tome_r: override the manifest's ToMe ``r``.
      **sparse_kwargs: forwarded to :func:`mpjax.torch_runtime.sparse.sparsify`.
    """
    exp = source if isinstance(source, Export) else load_export(source)
    if backend != "dense" and not sparse_layers(exp.manifest):
        raise ValueError(
            f"backend={backend!r}: no layer of this export is marked for 2:4 execution "
            f"(pattern {exp.manifest.get('pattern')!r}); use backend='dense'."
        )
    cfg = exp.manifest["model"]["config"]
    model = TorchViT(
        exp.dims,
        cfg.get("ln_eps", 1e-6),
        cfg.get("gelu_approximate", "none"),
        exp.manifest["tome_r"] if tome_r is None else tome_r,
    )
    model.load_state_dict(exp.state_dict)
    model = model.to(device=device, dtype=dtype).eval()
    if backend != "dense":
        sparse_mod.sparsify(model, sparse_layers(exp.manifest), backend, **sparse_kwargs)
    return model
