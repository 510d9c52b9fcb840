"""Export with EVERY layer masked, the convolution stem included: the torch model loaded back
from the export computes the masked Flax model's logits, and each mask sits in torch layout.

The stem kernel is ``(kh, kw, cin, cout)`` in Flax and ``(cout, cin, kh, kw)`` in torch, so its
mask must be transposed, not reshaped; a reshape keeps the right number of weights in the wrong
places, which only a logits comparison (or an independent layout oracle) can see."""

import jax
import numpy as np
import pytest
from vit_fixtures import small_vit_fixtures

from mpjax import export, tree
from mpjax.models import vit
from mpjax.pruning import apply_masks

torch = pytest.importorskip("torch")
from mpjax.torch_runtime import build_model, load_export  # noqa: E402

pytestmark = pytest.mark.torch
cfg, params = small_vit_fixtures(hidden_size=64, mlp_dim=128)
STEM = "embedding/kernel"


def every_layer_masked(params, keep=0.6, seed=0):
    """Random unstructured masks on every weight matrix (stem, q/k/v/out, MLP, head)."""
    rng = np.random.default_rng(seed)
    flat = tree.flatten(params)
    picked = {p: rng.random(flat[p].shape) < keep for p in tree.select(params)}
    assert STEM in picked and "head/kernel" in picked
    return tree.unflatten_like(params, picked), picked


def test_every_layer_masked_export_matches_masked_flax(params, cfg, tmp_path):
    masks, flat = every_layer_masked(params)
    man = export.export_vit(params, cfg, tmp_path, masks=masks, patterns=None)
    assert all(r["masked"] for r in man["layers"])
    images = np.random.default_rng(1).normal(size=(4, 32, 32, 3)).astype(np.float32)
    masked = apply_masks(params, masks)
    ref = np.asarray(jax.jit(lambda p: vit.ViT(cfg).apply({"params": p}, images))(masked))
    dense = np.asarray(jax.jit(lambda p: vit.ViT(cfg).apply({"params": p}, images))(params))
    with torch.no_grad():
        out = build_model(tmp_path)(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    assert np.abs(out - ref).max() < 1e-4
    assert np.abs(dense - ref).max() > 1e-2  # masking changes the function: not vacuous


def test_stem_mask_and_weight_in_torch_layout(params, cfg, tmp_path):
    masks, flat = every_layer_masked(params, seed=3)
    export.export_vit(params, cfg, tmp_path, masks=masks, patterns=None)
    exp = load_export(tmp_path)
    key = "patch_embed.proj.weight"
    leaf_mask = np.asarray(flat[STEM])  # (kh, kw, cin, cout)
    want = leaf_mask.transpose(3, 2, 0, 1)  # torch conv layout (cout, cin, kh, kw)
    np.testing.assert_array_equal(exp.masks[key].numpy(), want)
    leaf = np.asarray(tree.flatten(params)[STEM])
    np.testing.assert_array_equal(
        exp.state_dict[key].numpy(), (leaf * leaf_mask).transpose(3, 2, 0, 1)
    )
