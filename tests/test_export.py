"""Export of a pruned Flax ViT: timm layout, masks, manifest plan, hashes, clear errors."""

import hashlib
import json

import numpy as np
import pytest
from vit_fixtures import small_vit_fixtures

from mpjax import arch, export, tree
from mpjax.models import flax_to_timm
from mpjax.pruning import apply_masks, nm_masks

BLOCK_KERNELS = ["*encoderblock_*/*/kernel"]


# Widths divisible by 12 and 16 so 2:4, 6:12, 8:16 and 12:16 all fit; 10 classes.
cfg, params = small_vit_fixtures(hidden_size=96, mlp_dim=192)


def nm(params, k, n, include=BLOCK_KERNELS):
    return nm_masks(params, k, n, views=tree.select(params, include=include))


def test_semi_structured_rules():
    assert export.semi_structured_eligible(3072, 768)[0]
    assert export.semi_structured_eligible(2304, 768, "bfloat16")[0]
    ok, why = export.semi_structured_eligible(1000, 768)
    assert not ok and "multiple of (16, 16)" in why
    assert not export.semi_structured_eligible(768, 768, "float32")[0]
    assert not export.semi_structured_eligible(8, 64)[0]


def test_layer_map_covers_every_kernel(params, cfg):
    mapped = [p for e in export.layer_map(arch.vit_dims(cfg)) for p in e["flax"]]
    assert sorted(mapped) == sorted(tree.select(params))


def test_export_writes_masked_weights_masks_and_manifest(params, cfg, tmp_path):
    masks = nm(params, 2, 4)
    man = export.export_vit(params, cfg, tmp_path, masks=masks, tome_r=2)
    from safetensors.numpy import load_file

    sd, ms = load_file(tmp_path / "model.safetensors"), load_file(tmp_path / "masks.safetensors")
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(man))
    assert man["schema"] == export.SCHEMA and man["schema_version"] == export.SCHEMA_VERSION
    assert man["tome_r"] == 2 and man["dtype"] == "float32"
    assert set(man["files"]) == {"weights", "masks"}
    for label, info in man["files"].items():
        digest = hashlib.sha256((tmp_path / info["path"]).read_bytes()).hexdigest()
        assert info["sha256"] == digest, label
    qkv = "blocks.1.attn.qkv.weight"
    assert sd[qkv].shape == (3 * 96, 96) and ms[qkv].dtype == np.bool_
    assert not np.any(sd[qkv][~ms[qkv]])  # masks applied
    ref = flax_to_timm(apply_masks(params, masks), cfg)
    assert sd.keys() == ref.keys()
    for k in ref:
        np.testing.assert_array_equal(sd[k], np.asarray(ref[k]), err_msg=k)
    # The fused mask is q, k, v masks stacked in rows, as the fused weight.
    q = "Transformer/encoderblock_1/MultiHeadDotProductAttention_0/query/kernel"
    np.testing.assert_array_equal(
        ms[qkv][:96], tree.to_matrix(tree.flatten(masks)[q], tree.view_of(q, (96, 4, 24)))
    )
    plan = {r["torch"]: r for r in man["layers"]}
    assert plan["blocks.0.mlp.fc1"]["execution"] == "sparse"
    assert plan["blocks.0.mlp.fc1"]["density"] == 0.5
    assert plan["head"]["execution"] == "dense" and plan["head"]["reason"] == "not pruned"
    assert plan["blocks.0.attn.qkv"]["flax"][1].endswith("/key/kernel")
    want = arch.vit_macs(cfg, dict.fromkeys(("qkv", "proj", "fc1", "fc2"), "2:4"), tome_r=2)
    assert man["macs"]["gmac"] == pytest.approx(want.total / 1e9)


@pytest.mark.parametrize(
    "pattern,k,n,density", [("6:12", 6, 12, 0.5), ("8:16", 8, 16, 0.5), ("12:16", 12, 16, 0.75)]
)
def test_wider_patterns_export_dense_with_mac_accounting(
    params, cfg, tmp_path, pattern, k, n, density
):
    man = export.export_vit(params, cfg, tmp_path, masks=nm(params, k, n), patterns=pattern)
    rows = [r for r in man["layers"] if r["masked"]]
    assert len(rows) == 8
    for r in rows:
        assert r["execution"] == "dense" and "2:4 only" in r["reason"]
        assert r["pattern"] == pattern and r["density"] == pytest.approx(density)
    fc1 = next(r for r in man["layers"] if r["torch"] == "blocks.0.mlp.fc1")
    assert fc1["macs"] == pytest.approx(density * 17 * 96 * 192)


def test_shape_rule_refusal_is_recorded(params, cfg, tmp_path):
    masks = nm(params, 2, 4, include=["head/kernel", *BLOCK_KERNELS])
    man = export.export_vit(params, cfg, tmp_path, masks=masks)
    head = next(r for r in man["layers"] if r["torch"] == "head")
    assert head["execution"] == "dense" and "(10, 96)" in head["reason"]


def test_non_24_mask_raises(params, cfg, tmp_path):
    masks = nm(params, 3, 4)
    with pytest.raises(ValueError, match=r"blocks\.0\.attn\.qkv: mask is not 2:4.*row 0"):
        export.export_vit(params, cfg, tmp_path, masks=masks, patterns="2:4")
    assert not (tmp_path / "manifest.json").exists()


def test_partial_qkv_masks_raise(params, cfg, tmp_path):
    masks = nm(params, 2, 4, include=["*/query/kernel"])
    with pytest.raises(ValueError, match="mask all three or none"):
        export.export_vit(params, cfg, tmp_path, masks=masks)


def test_failed_export_keeps_previous_good_files(params, cfg, tmp_path):
    export.export_vit(params, cfg, tmp_path, masks=nm(params, 2, 4))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(ValueError):
        export.export_vit(params, cfg, tmp_path, masks=nm(params, 3, 4))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_baked_permutations_are_recorded(params, cfg, tmp_path):
    permute = pytest.importorskip("mpjax.pruning.permute")
    pparams, perms = permute.permute_vit(params, 4)
    man = export.export_vit(pparams, cfg, tmp_path, masks=nm(pparams, 2, 4), permutations=perms)
    from safetensors.numpy import load_file

    ms = load_file(tmp_path / "masks.safetensors")
    fc2 = next(r for r in man["layers"] if r["torch"] == "blocks.0.mlp.fc2")
    assert fc2["permutation"]["baked"] and fc2["permutation"]["key"] == "blocks.0.mlp.fc2.perm"
    path = "Transformer/encoderblock_0/MlpBlock_0/Dense_1/kernel"
    np.testing.assert_array_equal(ms["blocks.0.mlp.fc2.perm"], perms[path])
    with pytest.raises(ValueError, match="not a permutation"):
        export.export_vit(pparams, cfg, tmp_path, permutations={path: np.zeros(192, int)})


def test_bad_dtype_raises(params, cfg, tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        export.export_vit(params, cfg, tmp_path, dtype="int8")


def test_export_command_prunes_and_exports(tmp_path, capsys):
    from mpjax.cli import export as export_cli

    out = tmp_path / "exp"
    argv = ["vit-fmnist", "--out", str(out), "--nm", "2:4", "--tome-r", "2", "--dtype", "float16"]
    assert export_cli.main(argv) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["dtype"] == "float16" and man["tome_r"] == 2
    masked = [r for r in man["layers"] if r["masked"]]
    assert len(masked) == 16 and all(r["pattern"] == "2:4" for r in masked)
    want = arch.vit_macs("fmnist", dict.fromkeys(("qkv", "proj", "fc1", "fc2"), "2:4"), tome_r=2)
    assert man["macs"]["gmac"] == pytest.approx(want.total / 1e9)
    printed = capsys.readouterr().out
    assert printed.startswith(f"exported to {out}: 18 linear layers, 16 marked sparse; ")
    assert f"{100 * want.reduction:.2f}% below dense" in printed


@pytest.mark.parametrize("nm", ["4:4", "2-4", "dense"])
def test_export_command_rejects_bad_nm_before_loading(tmp_path, nm):
    from mpjax.cli import export as export_cli

    with pytest.raises(ValueError, match=f"--nm: pattern='{nm}'"):
        export_cli.main(["does-not-exist.npz", "--out", str(tmp_path / "x"), "--nm", nm])
    assert not (tmp_path / "x").exists()


def test_export_library_has_no_command_line():
    from pathlib import Path

    assert "argparse" not in Path(export.__file__).read_text()
    assert not hasattr(export, "main_export")
