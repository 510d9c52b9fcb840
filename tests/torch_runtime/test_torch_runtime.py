"""The torch runtime: parity with Flax, ToMe, manifest validation, 2:4 layers (CPU-emulated)."""

import json

import jax
import numpy as np
import pytest
from vit_fixtures import small_vit_fixtures

torch = pytest.importorskip("torch")

from mpjax import export, tree  # noqa: E402
from mpjax.models import tome, vit  # noqa: E402
from mpjax.pruning import apply_masks, nm_masks  # noqa: E402
from mpjax.torch_runtime import ManifestError, bench, build_model, load_export  # noqa: E402
from mpjax.torch_runtime import sparse as sparse_mod  # noqa: E402
from mpjax.torch_runtime.vit import merge_tokens  # noqa: E402

pytestmark = pytest.mark.torch
BLOCKS = ["*encoderblock_*/*/kernel"]


cfg, params = small_vit_fixtures(hidden_size=64, mlp_dim=128)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(2).normal(size=(3, 32, 32, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def flax_logits(cfg, images):
    fn = jax.jit(lambda p, r: vit.ViT(cfg).apply({"params": p}, images, tome_r=r), static_argnums=1)
    return lambda p, r: np.asarray(fn(p, r))


def torch_logits(directory, images, **kw):
    with torch.no_grad():
        return build_model(directory, **kw)(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()


def nm(params, k=2, n=4):
    return nm_masks(params, k, n, views=tree.select(params, include=BLOCKS))


@pytest.mark.parametrize("tome_r", [0, 3, (5, 1)])
def test_parity_with_flax(params, cfg, images, flax_logits, tmp_path, tome_r):
    masks = nm(params)
    export.export_vit(params, cfg, tmp_path, masks=masks, tome_r=tome_r)
    ref = flax_logits(apply_masks(params, masks), tome_r)
    out = torch_logits(tmp_path, images)
    assert np.abs(out - ref).max() < 1e-4
    if tome_r:  # ToMe changes the function: the check is not vacuous
        assert np.abs(ref - flax_logits(apply_masks(params, masks), 0)).max() > 1e-3


def test_parity_with_baked_permutation(params, cfg, images, flax_logits, tmp_path):
    from mpjax.pruning import permute

    pparams, perms = permute.permute_vit(params, 4)
    np.testing.assert_allclose(flax_logits(pparams, 2), flax_logits(params, 2), atol=1e-5)
    masks = nm(pparams)
    man = export.export_vit(pparams, cfg, tmp_path, masks=masks, permutations=perms, tome_r=2)
    assert sum(bool(r["permutation"]) for r in man["layers"]) == 4
    out = torch_logits(tmp_path, images)
    assert np.abs(out - flax_logits(apply_masks(pparams, masks), 2)).max() < 1e-4


def test_tome_merge_matches_models_tome():
    rng = np.random.default_rng(3)
    x, metric = rng.normal(size=(2, 17, 8)), rng.normal(size=(2, 17, 5))
    size = rng.integers(1, 4, size=(2, 17, 1)).astype(np.float64)
    for r in (3, 20):
        jx, js = tome.merge_tokens(
            jax.numpy.asarray(x, "float32"),
            jax.numpy.asarray(size, "float32"),
            jax.numpy.asarray(metric, "float32"),
            r,
        )
        tx, ts = merge_tokens(*(torch.tensor(a, dtype=torch.float32) for a in (x, size, metric)), r)
        np.testing.assert_allclose(tx.numpy(), np.asarray(jx), atol=1e-5)
        np.testing.assert_array_equal(ts.numpy(), np.asarray(js))
        assert ts.sum().item() == size.sum()  # sizes add up: no patch is lost


@pytest.fixture
def good_export(params, cfg, tmp_path):
    export.export_vit(params, cfg, tmp_path, masks=nm(params), tome_r=2)
    return tmp_path


def _edit_manifest(directory, fn):
    """Edit the manifest *and* reseal its content hash: a producer bug, not a hand edit (a
    hand edit is refused by its hash first: tests/torch_runtime/test_manifest.py)."""
    path = directory / "manifest.json"
    man = json.loads(path.read_text())
    fn(man)
    man["content_sha256"] = export.manifest_digest(man)
    path.write_text(json.dumps(man))


def _rewrite_tensors(directory, label, fn):
    """Change a safetensors file *and* fix its hash: a producer bug, not a transfer error."""
    from safetensors.numpy import load_file, save_file

    name = {"weights": "model.safetensors", "masks": "masks.safetensors"}[label]
    tensors = dict(load_file(directory / name))
    fn(tensors)
    save_file(tensors, directory / name)
    _edit_manifest(
        directory, lambda m: m["files"][label].update(sha256=export.file_sha256(directory / name))
    )


def test_good_export_loads(good_export):
    exp = load_export(good_export)
    assert exp.dims.hidden == 64 and len(exp.masks) == 8


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda m: m.update(schema_version=99), "schema_version 99"),
        (lambda m: m.update(schema="other"), "schema 'other'"),
        (lambda m: m.update(tome_r=[1, 2, 3]), "tome_r.*one per block"),
        (lambda m: m.pop("layers"), "'layers' missing"),
        (lambda m: m["model"]["config"].update(hidden=32), "shape"),
        (lambda m: m["model"]["config"].pop("mlp"), "missing integer fields"),
        (lambda m: m["layers"][-1].update(execution="sparse"), "head: marked sparse"),
        (
            lambda m: m["layers"][1].update(pattern="8:16", execution="sparse"),
            r"blocks\.0\.attn\.qkv: marked sparse but pattern='8:16'",
        ),
        (lambda m: m["layers"][1].update(pattern="6:12"), "not divisible by n=12"),
        (lambda m: m["files"]["weights"].update(path="../model.safetensors"), "inside the export"),
    ],
)
def test_tampered_manifest_is_refused(good_export, edit, match):
    _edit_manifest(good_export, edit)
    with pytest.raises(ManifestError, match=match):
        load_export(good_export)


def test_wrong_hash_is_refused(good_export):
    path = good_export / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="sha256 does not match"):
        load_export(good_export)
    (good_export / "masks.safetensors").unlink()
    with pytest.raises(ManifestError, match="missing"):
        load_export(good_export, verify_hashes=False)


def test_garbled_manifest_is_refused(good_export):
    (good_export / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_export(good_export)


def test_mask_that_is_not_24_is_refused(good_export):
    def break_mask(t):
        m = t["blocks.1.mlp.fc2.weight"].copy()
        m[5, :4] = True
        t["blocks.1.mlp.fc2.weight"] = m

    _rewrite_tensors(good_export, "masks", break_mask)
    with pytest.raises(ManifestError, match=r"blocks\.1\.mlp\.fc2: mask is not 2:4.*row 5"):
        load_export(good_export)


def test_weights_outside_mask_are_refused(good_export):
    def fill(t):
        t["blocks.0.attn.proj.weight"] = np.ones_like(t["blocks.0.attn.proj.weight"])

    _rewrite_tensors(good_export, "weights", fill)
    with pytest.raises(ManifestError, match=r"blocks\.0\.attn\.proj: weight is non-zero"):
        load_export(good_export)


# ------------------------------------------------------ 2:4 kernels, emulated on CPU
@pytest.fixture
def fake_cslt(monkeypatch):
    """Stand-ins for torch's cuSPARSELt ops with the same contract (checks the plumbing)."""
    calls = {"search": 0}

    def sparse_mm(
        packed,
        dense,
        bias=None,
        alpha=None,
        out_dtype=None,
        transpose_result=False,
        alg_id=0,
        split_k=1,
        split_k_mode=-1,
    ):
        assert dense.shape[1] % 8 == 0 and packed.shape[1] == dense.shape[0]
        y = packed @ dense + (0 if bias is None else bias[:, None])
        return y.t().contiguous() if transpose_result else y

    def search(packed, dense, bias=None, alpha=None, out_dtype=None, transpose_result=False):
        calls["search"] += 1
        return 0

    monkeypatch.setattr(torch, "_cslt_compress", lambda w: w.clone())
    monkeypatch.setattr(torch, "_cslt_sparse_mm", sparse_mm)
    monkeypatch.setattr(torch, "_cslt_sparse_mm_search", search)
    monkeypatch.setattr(sparse_mod, "REQUIRE_CUDA", False)
    monkeypatch.setattr(sparse_mod, "_ALG_CACHE", {})
    return calls


@pytest.mark.parametrize("transpose_result", [True, False])
def test_cslt_model_matches_dense_endpoint(good_export, images, fake_cslt, transpose_result):
    x = torch.from_numpy(images).permute(0, 3, 1, 2).to(torch.bfloat16)
    dense = build_model(good_export, dtype=torch.bfloat16)
    sp = build_model(
        good_export, dtype=torch.bfloat16, backend="cslt", transpose_result=transpose_result
    )
    assert type(sp.blocks[0].mlp.fc1).__name__ == "CsltLinear"
    with torch.no_grad():
        a, b = dense(x).float(), sp(x).float()
    assert (a - b).abs().max() < 0.05 * a.abs().max()
    assert fake_cslt["search"] > 0
    n = fake_cslt["search"]
    with torch.no_grad():
        sp(x)
    assert fake_cslt["search"] == n  # algorithm ids cached per GEMM shape


def test_cslt_linear_pads_rows_and_checks(fake_cslt):
    w = torch.randn(32, 64, dtype=torch.bfloat16)
    sparse_mod.magnitude_nm_(torch.nn.Linear(64, 32), [""])  # API smoke
    lin = torch.nn.Linear(64, 32).to(torch.bfloat16)
    masks = sparse_mod.magnitude_nm_(lin, [""])
    assert masks[""].reshape(32, -1, 4).sum(-1).eq(2).all()
    layer = sparse_mod.CsltLinear(lin.weight.detach(), lin.bias.detach(), "fc")
    x = torch.randn(5, 3, 64, dtype=torch.bfloat16)  # 15 rows: padded to 16 inside
    torch.testing.assert_close(layer(x).float(), lin(x).float(), atol=0.05, rtol=0.05)
    with pytest.raises(ValueError, match=r"fc: not 2:4 sparse: row 0"):
        sparse_mod.CsltLinear(w, None, "fc")
    w = lin.weight.detach()[:, :48].contiguous().float()
    with pytest.raises(ValueError, match="float32 has no 2:4 kernel"):
        sparse_mod.CsltLinear(w, None, "fc")


def test_sparse_backend_needs_cuda(good_export):
    with pytest.raises(ValueError, match="need the model on a CUDA device"):
        build_model(good_export, dtype=torch.bfloat16, backend="cslt")


def test_bench_pair_and_gemm_plumbing_on_cpu(fake_cslt):
    from mpjax.arch import ViTDims

    dims = ViTDims(
        image_size=32, patch_size=8, hidden=64, layers=2, mlp=128, heads=4, num_classes=10
    )
    dense, sp, names = bench.timing_models(dims, torch.bfloat16, "cpu")
    assert len(names) == 8
    x = torch.randn(2, 3, 32, 32, dtype=torch.bfloat16)
    row = bench.bench_pair(dense, sp, x, tome_r=2, graph=False, warmup=1, iters=3)
    assert row["speedup"] == pytest.approx(row["sparse_img_s"] / row["dense_img_s"])
    # same masked weights in both: only bf16 rounding differs (~0.01 on logits of size ~1)
    assert row["timer"] == "cpu" and row["sparse_vs_dense_max_abs_diff"] < 0.05
    gemm = bench.gemm_timings(bench.block_shapes(dims, 1), torch.bfloat16, "cpu", 1, 2)
    assert [g["layer"] for g in gemm] == ["qkv", "proj", "fc1", "fc2"]
    assert gemm[2]["M"] == 17 and gemm[2]["N"] == 128


def test_benchmark_main_without_cuda(tmp_path, monkeypatch, capsys):
    from mpjax.cli.bench import runtime

    monkeypatch.setenv("MPJAX_RESULTS_DIR", str(tmp_path))
    out = tmp_path / "gpu_runtime_cpu.json"
    assert runtime.main(["--arch", "vit-b16", "--tome", "0,8", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["device"] == "cpu (no CUDA)" and res["rows"] == []
    assert "needs a CUDA GPU" in res["timing"] and "GPU" in capsys.readouterr().out
    assert res["parity_max_abs_diff"] < 1e-4
    assert round(res["macs"]["vit-b16/tome8"]["sparse_tome_gmac"], 3) == 7.059
    assert res["versions"]["torch"] == torch.__version__
    assert runtime.load_results(tmp_path) == []  # a CPU run is not a GPU result


def test_benchmark_orchestration_with_emulated_kernels(tmp_path, monkeypatch, fake_cslt):
    """The GPU code path end to end on CPU (emulated cuSPARSELt, eager, tiny preset)."""
    from mpjax import arch
    from mpjax.cli.bench import runtime

    tiny = arch.ViTDims(
        image_size=32, patch_size=8, hidden=64, layers=2, mlp=128, heads=4, num_classes=10
    )
    monkeypatch.setitem(arch.PRESETS, "vit-tiny", tiny)
    out = tmp_path / "gpu_runtime_emulated.json"
    argv = [
        "--arch",
        "vit-tiny",
        "--batch",
        "2,3",
        "--tome",
        "0,2",
        "--dtype",
        "bf16",
        "--modes",
        "eager",
        "--iters",
        "2",
        "--warmup",
        "1",
        "--device",
        "cpu",
        "--no-parity",
        "--json",
        str(out),
    ]
    assert runtime.main(argv) == 0
    res = json.loads(out.read_text())
    assert "not a measurement" in res["device"]
    assert [(r["batch"], r["tome"]) for r in res["rows"]] == [(2, 0), (2, 2), (3, 0), (3, 2)]
    for r in res["rows"]:
        assert r["speedup"] == pytest.approx(r["sparse_img_s"] / r["dense_img_s"])
        assert r["n_sparse_layers"] == 8 and r["sparse_vs_dense_max_abs_diff"] < 0.05
    assert [g["layer"] for g in res["gemm"]] == ["qkv", "proj", "fc1", "fc2"]
    assert runtime.load_results(tmp_path) == []  # CPU timings are never shown as GPU results
    budget = runtime.main([*argv[:-1], str(tmp_path / "b.json"), "--budget-s", "0"])
    assert budget == 0
    skipped = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert [(r["batch"], r["tome"]) for r in skipped] == [(2, 0), (2, 2), (3, 0), (3, 2)]
    assert all(r["skipped"] == "time budget exhausted" and "speedup" not in r for r in skipped)
