"""Layout conversions of ViT parameters: old vit_jax names, timm and Hugging Face layouts.

Reading files and naming sources is :mod:`mpjax.models.sources`; this module maps tensors
between layouts. Layout maps (torch ``W (out, in)``, Linen kernel ``(in, out)``):

* Dense: ``kernel = W.T``; conv: ``kernel (p, p, C, D) = W (D, C, p, p).transpose(2, 3, 1, 0)``;
* attention in: ``kernel (D, H, hd) = W.T.reshape(D, H, hd)``, bias ``(H, hd)``; timm fuses
  q, k, v into ``attn.qkv.weight (3D, D)`` (rows ``[q; k; v]``);
* attention out: ``kernel (H, hd, D) = W.T.reshape(H, hd, D)``; LayerNorm ``weight -> scale``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from mpjax import npz, tree
from mpjax.models import vit

# Old vit_jax names inside an encoder block -> the big_vision names used here.
_OLD_BLOCK_NAMES = {
    "MultiHeadDotProductAttention_1": "MultiHeadDotProductAttention_0",
    "LayerNorm_2": "LayerNorm_1",
    "MlpBlock_3": "MlpBlock_0",
}
_NPZ_PREFIXES = ("params/", "opt/target/")


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor; converted without importing torch
        value = value.detach().cpu()
        value = value.float() if str(value.dtype) == "torch.bfloat16" else value
        value = value.numpy()
    arr = np.asarray(value)
    return arr.astype(np.float32) if arr.dtype.kind == "f" and arr.dtype != np.float64 else arr


def fix_vit_names(flat: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Rename old vit_jax / big_vision keys to this module's layout.

    * ``params/`` and ``opt/target/`` prefixes are dropped;
    * block modules ``MultiHeadDotProductAttention_1``, ``LayerNorm_2``, ``MlpBlock_3``
      (vit_jax) become ``..._0``, ``LayerNorm_1``, ``MlpBlock_0``;
    * a top-level big_vision ``pos_embedding (1, N, D)`` (added before the class token is
      prepended) becomes ``Transformer/posembed_input/pos_embedding (1, N+1, D)`` with a zero
      row for the class token, which computes the same function.

    Returns:
      the renamed dict and a list of ``"old -> new"`` notes.
    """
    out, notes = {}, []
    for key, value in flat.items():
        new = key
        for prefix in _NPZ_PREFIXES:
            new = new.removeprefix(prefix)
        for old, repl in _OLD_BLOCK_NAMES.items():
            new = re.sub(rf"(encoderblock_\d+)/{old}/", rf"\1/{repl}/", new)
        if new != key:
            notes.append(f"{key} -> {new}")
        out[new] = value
    pos = "Transformer/posembed_input/pos_embedding"
    if "pos_embedding" in out and "cls" in out and pos not in out:
        table = out.pop("pos_embedding")
        out[pos] = np.concatenate([np.zeros_like(table[:, :1]), table], axis=1)
        notes.append(f"pos_embedding -> {pos} (zero row prepended for the class token)")
    return out, notes


def infer_config(params: Any, **overrides: Any) -> vit.ViTConfig:
    """The :class:`ViTConfig` whose shapes match ViT ``params`` (big_vision layout).

    Raises:
      ValueError: naming the first ViT parameter path missing from ``params``.
    """
    flat = {k: np.shape(v) for k, v in tree.flatten(params).items()}
    try:
        p, _, c, d = flat["embedding/kernel"]
        _, heads, _ = flat["Transformer/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel"]
        mlp = flat["Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel"][1]
        tokens = flat["Transformer/posembed_input/pos_embedding"][1]
        classes = flat["head/kernel"][1]
    except KeyError as e:
        raise ValueError(f"{e.args[0]}: missing, so these params are not a mpjax ViT.") from e
    layers = len({k.split("/")[1] for k in flat if k.startswith("Transformer/encoderblock_")})
    side = int(round(np.sqrt(tokens - 1))) * p
    fields = dict(
        patch_size=p, hidden_size=d, num_layers=layers, num_heads=heads, mlp_dim=mlp,
        image_size=side, channels=c, num_classes=classes,
    )  # fmt: skip
    return vit.ViTConfig(**{**fields, **overrides})


def validate_params(params: Any, config: vit.ViTConfig, source: str = "params") -> dict:
    """Check every leaf against ``jax.eval_shape`` of ``ViT(config)``; returns float32 numpy.

    Raises:
      ValueError: naming the first missing, mis-shaped or unexpected parameter path.
    """
    expected = {k: tuple(v.shape) for k, v in tree.flatten(vit.abstract_params(config)).items()}
    got = {k: _to_numpy(v) for k, v in tree.flatten(params).items()}
    for path, shape in expected.items():
        if path not in got:
            raise ValueError(f"{path}: missing from {source} (expected shape {shape}).")
        if got[path].shape != shape:
            raise ValueError(
                f"{path}: shape {got[path].shape} in {source}, but the config expects {shape}."
            )
    extra = [k for k in got if k not in expected]
    if extra:
        raise ValueError(f"{extra[0]}: unexpected parameter in {source} (not part of {config}).")
    return tree.unflatten_like(vit.abstract_params(config), got)


class _Rule(NamedTuple):
    flax: str  # path in the Linen tree
    torch: str  # name in the torch state dict
    torch_shape: tuple[int, ...]
    kind: str  # copy | linear | conv | attn_in | attn_bias | attn_out


def _to_flax(a: np.ndarray, kind: str, cfg: vit.ViTConfig) -> np.ndarray:
    d, h, hd = cfg.hidden_size, cfg.num_heads, cfg.head_dim
    return {
        "copy": lambda: a,
        "linear": lambda: a.T,
        "conv": lambda: a.transpose(2, 3, 1, 0),
        "attn_in": lambda: a.T.reshape(d, h, hd),
        "attn_bias": lambda: a.reshape(h, hd),
        "attn_out": lambda: a.T.reshape(h, hd, d),
    }[kind]()


def _to_torch(a: np.ndarray, kind: str, cfg: vit.ViTConfig) -> np.ndarray:
    d = cfg.hidden_size
    return {
        "copy": lambda: a,
        "linear": lambda: a.T,
        "conv": lambda: a.transpose(3, 2, 0, 1),
        "attn_in": lambda: a.reshape(d, d).T,
        "attn_bias": lambda: a.reshape(d),
        "attn_out": lambda: a.reshape(d, d).T,
    }[kind]()


def _rules(cfg: vit.ViTConfig, names: Mapping[str, str]) -> list[_Rule]:
    """Rules from a name table (``names`` holds format strings for one layout)."""
    d, m, c, p = cfg.hidden_size, cfg.mlp_dim, cfg.channels, cfg.patch_size
    ln = lambda f, t: [_Rule(f + "/scale", t + ".weight", (d,), "copy"),  # noqa: E731
                       _Rule(f + "/bias", t + ".bias", (d,), "copy")]  # fmt: skip
    rules = [
        _Rule("cls", names["cls"], (1, 1, d), "copy"),
        _Rule(
            "Transformer/posembed_input/pos_embedding", names["pos"], (1, cfg.num_tokens, d), "copy"
        ),
        _Rule("embedding/kernel", names["patch"] + ".weight", (d, c, p, p), "conv"),
        _Rule("embedding/bias", names["patch"] + ".bias", (d,), "copy"),
        *ln("Transformer/encoder_norm", names["norm"]),
        _Rule("head/kernel", names["head"] + ".weight", (cfg.num_classes, d), "linear"),
        _Rule("head/bias", names["head"] + ".bias", (cfg.num_classes,), "copy"),
    ]
    for i in range(cfg.num_layers):
        blk, t = f"Transformer/encoderblock_{i}/", names["block"].format(i=i)
        att = blk + "MultiHeadDotProductAttention_0/"
        rules += ln(blk + "LayerNorm_0", t + names["ln0"]) + ln(
            blk + "LayerNorm_1", t + names["ln1"]
        )
        for f in ("query", "key", "value"):
            rules.append(_Rule(att + f + "/kernel", t + names[f] + ".weight", (d, d), "attn_in"))
            rules.append(_Rule(att + f + "/bias", t + names[f] + ".bias", (d,), "attn_bias"))
        rules.append(_Rule(att + "out/kernel", t + names["out"] + ".weight", (d, d), "attn_out"))
        rules.append(_Rule(att + "out/bias", t + names["out"] + ".bias", (d,), "copy"))
        for f, tname, shape in (("Dense_0", "fc1", (m, d)), ("Dense_1", "fc2", (d, m))):
            rules.append(
                _Rule(blk + f"MlpBlock_0/{f}/kernel", t + names[tname] + ".weight", shape, "linear")
            )
            rules.append(
                _Rule(blk + f"MlpBlock_0/{f}/bias", t + names[tname] + ".bias", shape[:1], "copy")
            )
    return rules


_TIMM = dict(
    cls="cls_token", pos="pos_embed", patch="patch_embed.proj", norm="norm", head="head",
    block="blocks.{i}.", ln0="norm1", ln1="norm2", query="attn.q", key="attn.k", value="attn.v",
    out="attn.proj", fc1="mlp.fc1", fc2="mlp.fc2",
)  # fmt: skip
_HF = dict(
    cls="vit.embeddings.cls_token", pos="vit.embeddings.position_embeddings",
    patch="vit.embeddings.patch_embeddings.projection", norm="vit.layernorm", head="classifier",
    block="vit.encoder.layer.{i}.", ln0="layernorm_before", ln1="layernorm_after",
    query="attention.attention.query", key="attention.attention.key",
    value="attention.attention.value", out="attention.output.dense",
    fc1="intermediate.dense", fc2="output.dense",
)  # fmt: skip


def _import(sd: Mapping[str, Any], rules: list[_Rule], cfg, source: str, strict: bool) -> dict:
    out = {}
    for rule in rules:
        if rule.torch not in sd:
            raise ValueError(f"{rule.torch}: missing from {source} (needed for {rule.flax}).")
        a = _to_numpy(sd[rule.torch])
        if a.shape != rule.torch_shape:
            raise ValueError(
                f"{rule.torch}: shape {a.shape} in {source}, expected {rule.torch_shape} "
                f"for {rule.flax} (check the ViT config)."
            )
        out[rule.flax] = _to_flax(a, rule.kind, cfg)
    used = {r.torch for r in rules}
    extra = [k for k in sd if k not in used]
    if strict and extra:
        raise ValueError(f"{extra[0]}: unexpected tensor in {source}; pass strict=False to ignore.")
    return validate_params(npz.unflatten_dict(out), cfg, source)


def _export(params: Any, rules: list[_Rule], cfg: vit.ViTConfig) -> dict[str, np.ndarray]:
    flat = tree.flatten(validate_params(params, cfg))
    return {r.torch: np.ascontiguousarray(_to_torch(flat[r.flax], r.kind, cfg)) for r in rules}


def _cfg(config: vit.ViTConfig | str) -> vit.ViTConfig:
    return vit.config_for(config) if isinstance(config, str) else config


def timm_to_flax(
    state_dict: Mapping[str, Any], config: vit.ViTConfig | str, *, strict: bool = True,
    source: str = "state_dict",
) -> dict:  # fmt: skip
    """timm ``VisionTransformer`` state dict -> Linen params (fused ``attn.qkv`` split).

    Raises:
      ValueError: naming a missing or mis-shaped tensor (or an unexpected one if ``strict``).
    """
    cfg, d = _cfg(config), _cfg(config).hidden_size
    sd = dict(state_dict)
    for i in range(cfg.num_layers):
        for part, shape in (("weight", (3 * d, d)), ("bias", (3 * d,))):
            name = f"blocks.{i}.attn.qkv.{part}"
            if name not in sd:
                raise ValueError(f"{name}: missing from {source} (timm fused q/k/v).")
            qkv = _to_numpy(sd.pop(name))
            if qkv.shape != shape:
                raise ValueError(f"{name}: shape {qkv.shape} in {source}, expected {shape}.")
            for j, f in enumerate("qkv"):
                sd[f"blocks.{i}.attn.{f}.{part}"] = qkv[j * d : (j + 1) * d]
    return _import(sd, _rules(cfg, _TIMM), cfg, source, strict)


def flax_to_timm(params: Any, config: vit.ViTConfig | str) -> dict[str, np.ndarray]:
    """Linen params -> timm ``VisionTransformer`` state dict (numpy, q/k/v fused)."""
    cfg = _cfg(config)
    sd = _export(params, _rules(cfg, _TIMM), cfg)
    for i in range(cfg.num_layers):
        for part in ("weight", "bias"):
            parts = [sd.pop(f"blocks.{i}.attn.{f}.{part}") for f in "qkv"]
            sd[f"blocks.{i}.attn.qkv.{part}"] = np.concatenate(parts, axis=0)
    return sd


def hf_to_flax(
    state_dict: Mapping[str, Any], config: vit.ViTConfig | str, *, strict: bool = True,
    source: str = "state_dict",
) -> dict:  # fmt: skip
    """Hugging Face ``ViTForImageClassification`` state dict -> Linen params.

    A missing ``vit.`` prefix (a bare ``ViTModel`` saved with a classifier) is accepted.
    HF configs use LayerNorm eps 1e-12: set ``config.layernorm_eps`` to match exactly.
    """
    cfg = _cfg(config)
    sd = dict(state_dict)
    if not any(k.startswith("vit.") for k in sd):
        sd = {("vit." + k if not k.startswith("classifier") else k): v for k, v in sd.items()}
    return _import(sd, _rules(cfg, _HF), cfg, source, strict)


def flax_to_hf(params: Any, config: vit.ViTConfig | str) -> dict[str, np.ndarray]:
    """Linen params -> Hugging Face ``ViTForImageClassification`` state dict (numpy)."""
    cfg = _cfg(config)
    return _export(params, _rules(cfg, _HF), cfg)


def detect_layout(names: Any) -> str:
    """``"timm"``, ``"hf"``, ``"flax"`` (``a/b/kernel`` keys) or ``"unknown"`` for tensor names."""
    names = list(names)
    if any(re.fullmatch(r"blocks\.\d+\.attn\.qkv\.weight", n) for n in names):
        return "timm"
    if any(re.search(r"(^|\.)encoder\.layer\.\d+\.attention\.attention\.", n) for n in names):
        return "hf"
    if any("/" in n for n in names):
        return "flax"
    return "unknown"
