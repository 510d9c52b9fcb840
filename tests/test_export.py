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


def unstructured(params, keep=0.5, seed=0):
    """Random unstructured masks (no N:M structure) on the block kernels, None elsewhere."""
    rng = np.random.default_rng(seed)
    flat = tree.flatten(params)
    picked = {
        p: rng.random(flat[p].shape) < keep for p in tree.select(params, include=BLOCK_KERNELS)
    }
    return tree.unflatten_like(params, picked)


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


# ------------------------------------------- files the export did not write (issue 11)
def _snapshot(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


def test_foreign_masks_file_is_never_deleted(params, cfg, tmp_path):
    (tmp_path / "masks.safetensors").write_bytes(b"not ours")
    man = export.export_vit(params, cfg, tmp_path)  # deleted it as "stale" before
    assert "masks" not in man["files"]
    assert (tmp_path / "masks.safetensors").read_bytes() == b"not ours"
    export.export_vit(params, cfg, tmp_path, overwrite=True)  # not even with overwrite
    assert (tmp_path / "masks.safetensors").read_bytes() == b"not ours"


def test_foreign_file_under_an_export_name_is_refused(params, cfg, tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"someone else's weights")
    with pytest.raises(FileExistsError, match="model.safetensors exists and was not written"):
        export.export_vit(params, cfg, tmp_path, masks=nm(params, 2, 4))
    assert _snapshot(tmp_path) == {"model.safetensors": b"someone else's weights"}
    export.export_vit(params, cfg, tmp_path, masks=nm(params, 2, 4), overwrite=True)
    assert (tmp_path / "manifest.json").exists()


def test_own_files_are_replaced_and_own_stale_masks_removed(params, cfg, tmp_path):
    export.export_vit(params, cfg, tmp_path, masks=nm(params, 2, 4))
    assert (tmp_path / "masks.safetensors").exists()
    man = export.export_vit(params, cfg, tmp_path)  # no masks now: ours, listed, removed
    assert "masks" not in man["files"] and not (tmp_path / "masks.safetensors").exists()
    assert sorted(_snapshot(tmp_path)) == ["manifest.json", "model.safetensors"]


def test_changed_masks_file_is_not_ours_any_more(params, cfg, tmp_path):
    export.export_vit(params, cfg, tmp_path, masks=nm(params, 2, 4))
    (tmp_path / "masks.safetensors").write_bytes(b"edited by hand")
    export.export_vit(params, cfg, tmp_path)
    assert (tmp_path / "masks.safetensors").read_bytes() == b"edited by hand"


def test_interrupted_export_is_recognised_by_its_journal(params, cfg, tmp_path, monkeypatch):
    export.export_vit(params, cfg, tmp_path, masks=nm(params, 2, 4))
    real = export.os.replace

    def crash_on_manifest(src, dst):
        if str(dst).endswith("manifest.json"):
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(export.os, "replace", crash_on_manifest)
    with pytest.raises(KeyboardInterrupt):
        export.export_vit(params, cfg, tmp_path, masks=nm(params, 8, 16), patterns="8:16")
    monkeypatch.setattr(export.os, "replace", real)
    assert (tmp_path / export.JOURNAL_FILE).exists()  # new weights in place, old manifest
    man = export.export_vit(params, cfg, tmp_path, masks=nm(params, 8, 16), patterns="8:16")
    assert man["pattern"] == "8:16" and not (tmp_path / export.JOURNAL_FILE).exists()


def test_directory_that_is_a_file_is_refused(params, cfg, tmp_path):
    (tmp_path / "f").write_text("x")
    for bad in (tmp_path / "f", tmp_path / "f" / "sub"):
        with pytest.raises(ValueError, match="is or lies under a regular file"):
            export.export_vit(params, cfg, bad)


def test_unstructured_masks_export_dense_with_masks(params, cfg, tmp_path):
    masks = unstructured(params)
    man = export.export_vit(params, cfg, tmp_path, masks=masks, patterns=None)
    assert man["pattern"] == "unstructured" and man["sparse_2_4"] is False
    rows = [r for r in man["layers"] if r["masked"]]
    assert len(rows) == 8 and {r["reason"] for r in rows} == {"unstructured mask"}
    assert "masks" in man["files"]
    auto = export.export_vit(params, cfg, tmp_path, masks=masks, patterns="auto")
    assert auto["pattern"] == "unstructured"  # "auto" finds no 2:4 layer in these masks


# ------------------------------------------------------------- the export command
def _save_pruned(directory, params, masks, meta):
    from mpjax import checkpoint

    checkpoint.save_params(directory, params, masks, meta)
    return str(directory)


def _manifest(out):
    return json.loads((out / "manifest.json").read_text())


def _job_meta(pattern, tome_r):
    """The metadata `mpjax prune` stores (mpjax.pipeline.job.run)."""
    return {"job": {"pattern": pattern, "tome_r": tome_r, "method": "magnitude"},
            "result": {"pattern": pattern, "tome_r": tome_r}}  # fmt: skip


def test_command_reads_pattern_and_tome_from_the_checkpoint(params, tmp_path, capsys):
    from mpjax.cli import export as export_cli

    masks = nm(params, 8, 16)
    src = _save_pruned(tmp_path / "ckpt", apply_masks(params, masks), masks, _job_meta("8:16", 2))
    assert export_cli.main([src, "--out", str(tmp_path / "a")]) == 0
    man = _manifest(tmp_path / "a")
    assert man["pattern"] == "8:16" and man["tome_r"] == 2
    assert "pattern: the checkpoint's metadata; ToMe r: the checkpoint's metadata" in (
        capsys.readouterr().out
    )
    # explicit flags override the metadata; --tome-r is an alias of --tome
    argv = [src, "--out", str(tmp_path / "b"), "--pattern", "12:16", "--tome-r", "1"]
    assert export_cli.main(argv) == 0
    man = _manifest(tmp_path / "b")
    assert man["pattern"] == "12:16" and man["tome_r"] == 1
    assert export_cli.main([src, "--out", str(tmp_path / "c"), "--tome", "0"]) == 0
    assert _manifest(tmp_path / "c")["tome_r"] == 0


def test_command_exports_an_unstructured_checkpoint(params, tmp_path):
    from mpjax.cli import export as export_cli

    masks = unstructured(params)
    pruned = apply_masks(params, masks)
    src = _save_pruned(tmp_path / "ckpt", pruned, masks, _job_meta("unstructured", 0))
    assert export_cli.main([src, "--out", str(tmp_path / "e")]) == 0
    man = _manifest(tmp_path / "e")
    assert man["pattern"] == "unstructured" and man["sparse_2_4"] is False
    assert all(r["execution"] == "dense" for r in man["layers"])
    with pytest.raises(ValueError, match="--pattern 2:4: the masks do not fit it.*unstructured"):
        export_cli.main([src, "--out", str(tmp_path / "f"), "--pattern", "2:4"])
    assert not (tmp_path / "f").exists()  # a failed run leaves no empty --out
    wrong = _save_pruned(tmp_path / "wrong", pruned, masks, _job_meta("2:4", 0))
    with pytest.raises(ValueError, match=r"--pattern 2:4 \(the checkpoint's metadata\): the masks"):
        export_cli.main([wrong, "--out", str(tmp_path / "g")])


def test_command_without_metadata_uses_2_4_where_masks_fit(params, tmp_path):
    from mpjax.cli import export as export_cli

    masks = nm(params, 2, 4)
    src = _save_pruned(tmp_path / "ckpt", apply_masks(params, masks), masks, {})
    assert export_cli.main([src, "--out", str(tmp_path / "e")]) == 0
    assert _manifest(tmp_path / "e")["pattern"] == "2:4"


def test_settings_read_the_metadata_mpjax_prune_writes():
    """`mpjax prune` stores ``{"job": asdict(PruneJob), ...}`` (mpjax.pipeline.job.run)."""
    import dataclasses

    from mpjax.cli import export as export_cli
    from mpjax.pipeline import PruneJob

    job = PruneJob(source="s", out="o", pattern="unstructured", sparsity=0.5, tome_r=3)
    args = export_cli.build_parser().parse_args(["s", "--out", "o"])
    got = export_cli.resolve_settings(args, {"m": True}, {"job": dataclasses.asdict(job)})
    assert got.patterns is None and got.tome_r == 3  # None: unstructured


def test_command_refuses_a_foreign_out_before_loading(tmp_path):
    from mpjax.cli import export as export_cli

    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match=r"--out .*not an earlier `mpjax export` run.*--overwrite"):
        export_cli.main(["does-not-exist.npz", "--out", str(out)])
    assert _snapshot(out) == {"notes.txt": b"keep"}
    (tmp_path / "file").write_text("x")
    for bad in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(ValueError, match="--out"):
            export_cli.main(["does-not-exist.npz", "--out", str(bad)])
    assert (tmp_path / "file").read_text() == "x"


def test_command_overwrite_keeps_foreign_files(tmp_path):
    from mpjax.cli import export as export_cli

    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    (out / "masks.safetensors").write_bytes(b"not ours")
    assert export_cli.main(["vit-fmnist", "--out", str(out), "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "keep"
    assert (out / "masks.safetensors").read_bytes() == b"not ours"  # deleted as "stale" before
    assert "masks" not in _manifest(out)["files"]
    # our own --out now, but masks.safetensors is still not ours: replaced only on --overwrite
    with pytest.raises(ValueError, match="--out: .*masks.safetensors exists and was not written"):
        export_cli.main(["vit-fmnist", "--out", str(out), "--nm", "2:4"])
    assert (out / "masks.safetensors").read_bytes() == b"not ours"
    assert export_cli.main(["vit-fmnist", "--out", str(out), "--nm", "2:4", "--overwrite"]) == 0
    assert "masks" in _manifest(out)["files"] and (out / "notes.txt").read_text() == "keep"


def test_command_accepts_an_export_made_before_the_marker(params, cfg, tmp_path):
    from mpjax.cli import export as export_cli

    export.export_vit(params, cfg, tmp_path / "old", masks=nm(params, 2, 4))
    assert export_cli.main(["vit-fmnist", "--out", str(tmp_path / "old")]) == 0
    assert not (tmp_path / "old" / "masks.safetensors").exists()  # ours: removed as stale


@pytest.mark.parametrize(
    "flags,match",
    [
        (["--tome", "-1"], r"--tome \(--tome-r\): -1"),
        (["--tome-r", "-2"], r"--tome \(--tome-r\): -2"),
        (["--pattern", "2-4"], "--pattern: pattern='2-4'"),
    ],
)
def test_command_rejects_bad_flags_before_loading(tmp_path, flags, match):
    from mpjax.cli import export as export_cli

    with pytest.raises(ValueError, match=match):
        export_cli.main(["does-not-exist.npz", "--out", str(tmp_path / "x"), *flags])
    assert not (tmp_path / "x").exists()


def test_command_rejects_tome_beyond_the_tokens(tmp_path):
    from mpjax.cli import export as export_cli

    with pytest.raises(
        ValueError, match=r"--tome \(--tome-r\): 100; this ViT merges at most 8 tokens"
    ):
        export_cli.main(["vit-fmnist", "--out", str(tmp_path / "x"), "--tome", "100"])
    assert not (tmp_path / "x").exists()
