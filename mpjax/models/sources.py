"""Model sources: open whatever a user points mpjax at, and say where it came from.

:func:`load_source` reads

==============================  ==============================================================
source                          result
==============================  ==============================================================
orbax checkpoint directory      ``mpjax.checkpoint.restore_params(dir)`` (params, masks, meta)
``*.npz`` (big_vision/vit_jax)  nested Linen dict from ``"a/b/kernel"`` keys (old names fixed)
``*.safetensors`` (torch)       flat ``{name: ndarray}`` in torch layout (``tree.select`` reads it)
sharded safetensors             the same from every shard of ``model.safetensors.index.json``
                                (a folder holding it, or the file; bf16/f16 read as float32)
``vit-ti16`` ... ``vit-l16``    random ViT params with the big_vision names (numpy, fast)
``shipped``                     the Fashion-MNIST ViT shipped with mpjax (its training record)
``shipped-wide``                the larger shipped Fashion-MNIST ViT (width 128, 6 blocks)
==============================  ==============================================================

and describes the source with a :class:`SourceInfo`. Every floating leaf of what it loads
(weights, biases, norm scales, embeddings) is checked: a NaN or Inf is refused, naming its
path. :func:`load_vit_checkpoint` turns a ``.npz`` or a timm / Hugging Face ``.safetensors``
file into :class:`~mpjax.models.vit.ViT` params, checked leaf by leaf against
``jax.eval_shape`` of the model (the layout maps are in :mod:`mpjax.models.convert`).
:class:`LoadedModel` bundles params, the ViT config and the source info with the apply
function that evaluation and distillation take.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from mpjax import lazy, npz, tree
from mpjax.models import convert, vit

#: What :func:`load_source` accepts, as error messages name it.
SUPPORTED = (
    "an orbax checkpoint directory, a big_vision/vit_jax .npz file, a torch-layout "
    ".safetensors file (timm or Hugging Face), 'shipped' or 'shipped-wide' (the Fashion-MNIST "
    "ViTs shipped with mpjax) or a random init name (vit-ti16, vit-s16, vit-b16, vit-l16, vit-fmnist)"
)
#: The named random inits of :func:`load_source`.
RANDOM_INITS = ("vit-ti16", "vit-s16", "vit-b16", "vit-l16", "vit-fmnist")
#: Source name of the Fashion-MNIST ViT shipped with mpjax.
SHIPPED = "shipped"
#: Source names of every shipped model (:data:`mpjax.models.shipped.SHIPPED_MODELS`).
SHIPPED_SOURCES = (SHIPPED, "shipped-wide")


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    """Where loaded params came from.

    Attributes:
      kind: ``"orbax" | "npz" | "safetensors" | "random" | "shipped"``.
      source: the path or name as given.
      config: the :class:`~mpjax.models.vit.ViTConfig` the params fit, or ``None`` when they
        are not a mpjax ViT (always ``None`` for ``.safetensors``: torch layout).
      layout: ``"flax"``, ``"timm"``, ``"hf"`` or ``"unknown"`` (tensor naming of the params).
      seed: seed of a named random init (``None`` otherwise).
      masks: the masks saved beside an orbax checkpoint's params (``None`` otherwise).
      meta: the metadata of an orbax checkpoint, or the training record of the shipped model.
      renamed: ``"old -> new"`` notes of the keys renamed in an ``.npz`` file.
    """

    kind: str
    source: str
    config: vit.ViTConfig | None
    layout: str
    seed: int | None = None
    masks: Any = None
    meta: dict | None = None
    renamed: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (shallow: params-like values are not copied)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclasses.dataclass
class LoadedModel:
    """A loaded model: params, its ViT config (``None`` for other models) and its source."""

    params: Any
    config: vit.ViTConfig | None
    info: SourceInfo

    def apply_fn(self, tome_r: int = 0):
        """``apply_fn(params, images, train) -> logits`` of the ViT, with ``tome_r`` merges.

        Raises:
          ValueError: when the model is not a ViT.
        """
        if self.config is None:
            raise ValueError("source: not a ViT; evaluation and distillation need a ViT model.")
        model = vit.ViT(self.config)

        def apply_fn(params, images, train=False):
            del train
            return model.apply({"params": params}, images, tome_r=tome_r)

        return apply_fn


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """All tensors of a ``.safetensors`` file as numpy arrays (torch layout kept).

    Raises:
      ValueError: naming the file when it cannot be read.
    """
    from safetensors.numpy import load_file

    try:
        return dict(load_file(str(path)))
    except Exception as e:  # safetensors raises its own error type for bad headers
        raise ValueError(
            f"{path}: not a readable .safetensors file ({e}); expected {SUPPORTED}."
        ) from e


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    return npz.read_npz(path, what="an .npz parameter file")


def random_init(config: vit.ViTConfig | str, seed: int = 0) -> dict:
    """Random ViT params in numpy, fast even for ViT-L (no Flax init is run).

    Shapes come from ``jax.eval_shape`` of the model. Kernels are ``N(0, 1/d_in)`` with
    ``d_in`` the reduction size of the :mod:`mpjax.tree` matrix view (so the singular values
    of each ``W`` fill the Marchenko-Pastur bulk, edge ``1 + sqrt(d_out/d_in)``); biases
    and LayerNorm biases 0, LayerNorm scales 1, ``cls``/``pos_embedding`` ``N(0, 0.02^2)``.

    Args:
      config: a :class:`~mpjax.models.vit.ViTConfig` or a preset name (``"b16"``, ...).
      seed: numpy seed.

    Returns:
      Nested Linen params with float32 numpy leaves.
    """
    config = vit.config_for(config) if isinstance(config, str) else config
    abstract = vit.abstract_params(config)
    rng = np.random.default_rng(seed)
    out = {p: random_leaf(rng, p, tuple(x.shape)) for p, x in tree.flatten(abstract).items()}
    return tree.unflatten_like(abstract, out)


def random_leaf(rng: np.random.Generator, path: str, shape: tuple[int, ...]) -> np.ndarray:
    """One leaf of :func:`random_init`, drawn from ``rng`` (drawn in tree order there)."""
    name = path.rsplit("/", 1)[-1]
    if name == "kernel":
        std = 1.0 / np.sqrt(tree.view_of(path, shape).d_in)
        leaf = rng.standard_normal(shape, dtype=np.float32)
        leaf *= np.float32(std)  # in place: one array of the leaf's size, not two
        return leaf
    if name == "scale":
        return np.ones(shape, np.float32)
    if name == "bias":
        return np.zeros(shape, np.float32)
    leaf = rng.standard_normal(shape, dtype=np.float32)
    leaf *= np.float32(0.02)
    return leaf


def load_vit_checkpoint(
    path: str | Path, config: vit.ViTConfig | str, *, strict: bool = True
) -> dict:
    """ViT params from a ``.npz`` (big_vision / vit_jax) or ``.safetensors`` (timm or Hugging
    Face, autodetected) file, validated against ``jax.eval_shape`` of ``ViT(config)``.

    Args:
      path: the checkpoint file.
      config: a :class:`~mpjax.models.vit.ViTConfig` or a preset name.
      strict: refuse tensors the ViT does not use (torch layouts only).

    Raises:
      ValueError: unreadable file, unknown layout, a missing / mis-shaped tensor, or a
        tensor holding NaN or Inf (each named).
    """
    params = _load_vit_checkpoint(Path(path), config, strict)
    tree.check_finite_leaves(params, where=str(path))
    return params


def _load_vit_checkpoint(path: Path, config: vit.ViTConfig | str, strict: bool) -> dict:
    cfg = vit.config_for(config) if isinstance(config, str) else config
    if path.suffix == ".npz":
        flat, _ = convert.fix_vit_names(_read_npz(path))
        return convert.validate_params(npz.unflatten_dict(flat), cfg, str(path))
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: expected a .npz or .safetensors ViT checkpoint.")
    state_dict = read_safetensors(path)
    layout = convert.detect_layout(state_dict)
    if layout == "timm":
        return convert.timm_to_flax(state_dict, cfg, strict=strict, source=str(path))
    if layout == "hf":
        return convert.hf_to_flax(state_dict, cfg, strict=strict, source=str(path))
    if layout == "flax":
        flat, _ = convert.fix_vit_names(state_dict)
        return convert.validate_params(npz.unflatten_dict(flat), cfg, str(path))
    raise ValueError(f"{path}: tensor names match neither timm, Hugging Face nor Flax ViT layouts.")


def load_source(source: str | Path, *, seed: int = 0) -> tuple[Any, SourceInfo]:
    """Params and a description of where they came from.

    A name (a random init, ``"shipped"``) is read as a name only when no file or directory
    of that name exists.

    Args:
      source: a path or a name (see the module table and :data:`SUPPORTED`).
      seed: seed of a named random init.

    Returns:
      ``(params, info)`` with ``info`` a :class:`SourceInfo`: ``masks``/``meta`` are set for
      orbax, ``meta`` (the training record) for the shipped model, ``renamed`` for npz,
      ``seed`` for a random init.

    Raises:
      ValueError: for an unknown name, a missing path, an unsupported or unreadable file, or
        a floating parameter (any leaf: weights, biases, norms, embeddings) holding NaN or
        Inf; the message names the parameter's path.
    """
    params, info = _load_source(source, seed)
    tree.check_finite_leaves(params, where=f"source {str(source)!r}")
    return params, info


def _load_source(source: str | Path, seed: int) -> tuple[Any, SourceInfo]:
    """:func:`load_source` before the finiteness check."""
    text = str(source)
    path = Path(source)
    if text.lower() in RANDOM_INITS and not path.exists():
        config = vit.config_for(text)
        info = SourceInfo("random", text, config, "flax", seed=seed)
        return random_init(config, seed), info
    if text in SHIPPED_SOURCES and not path.exists():
        # Trained by mpjax.training, which builds on this package: imported only when asked.
        from mpjax.models.shipped import load_shipped_model

        params, config, record = load_shipped_model() if text == SHIPPED else load_shipped_model(text)
        return params, SourceInfo(SHIPPED, text, config, "flax", meta=record)
    if path.name.endswith(".index.json") or (path / lazy.INDEX_NAME).is_file():
        state_dict = lazy.open_safetensors(path).materialize()  # a sharded checkpoint
        return state_dict, SourceInfo("safetensors", text, None, convert.detect_layout(state_dict))
    if path.is_dir():
        from mpjax.checkpoint import restore_params  # orbax: imported only when needed

        params, masks, meta = restore_params(path)
        info = SourceInfo("orbax", text, _maybe_config(params), "flax", masks=masks, meta=meta)
        return params, info
    if not path.exists():
        raise ValueError(
            f"source: {text!r} is neither an existing path nor a known name; expected {SUPPORTED}."
        )
    if path.suffix == ".npz":
        flat, notes = convert.fix_vit_names(_read_npz(path))
        params = npz.unflatten_dict(flat)
        info = SourceInfo("npz", text, _maybe_config(params), "flax", renamed=tuple(notes))
        return params, info
    if path.suffix == ".safetensors":
        state_dict = read_safetensors(path)
        return state_dict, SourceInfo(
            "safetensors", text, None, convert.detect_layout(state_dict)
        )
    raise ValueError(f"{path}: unsupported file type {path.suffix!r}; expected {SUPPORTED}.")


def load_model(source: str | Path, *, seed: int = 0) -> LoadedModel:
    """:func:`load_source` as a :class:`LoadedModel` (config ``None`` when not a ViT)."""
    params, info = load_source(source, seed=seed)
    return LoadedModel(params, info.config, info)


def _maybe_config(params: Any) -> vit.ViTConfig | None:
    try:
        return convert.infer_config(params)
    except (ValueError, TypeError):
        return None
