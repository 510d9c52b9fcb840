"""Manifest verification: the configuration is hashed, versions are checked, values interpreted."""

import json

import numpy as np
import pytest
from vit_fixtures import small_vit_fixtures

torch = pytest.importorskip("torch")

from mpjax import export, tree  # noqa: E402
from mpjax.pruning import nm_masks  # noqa: E402
from mpjax.torch_runtime import ManifestError, build_model, load_export  # noqa: E402

pytestmark = pytest.mark.torch
BLOCKS = ["*encoderblock_*/*/kernel"]

cfg, params = small_vit_fixtures(hidden_size=64, mlp_dim=128)


@pytest.fixture
def small_export(params, cfg, tmp_path):
    masks = nm_masks(params, 2, 4, views=tree.select(params, include=BLOCKS))
    export.export_vit(params, cfg, tmp_path, masks=masks, tome_r=2)
    return tmp_path


def _edit(directory, fn, reseal=False):
    path = directory / "manifest.json"
    man = json.loads(path.read_text())
    fn(man)
    if reseal:  # a producer that writes a consistent but wrong manifest
        man["content_sha256"] = export.manifest_digest(man)
    path.write_text(json.dumps(man, indent=1))


def _logits(directory):
    x = torch.from_numpy(np.random.default_rng(0).random((2, 3, 32, 32), np.float32))
    with torch.no_grad():
        return build_model(directory)(x).numpy()


def test_written_manifest_carries_its_digest(small_export):
    man = json.loads((small_export / "manifest.json").read_text())
    assert man["schema_version"] == export.SCHEMA_VERSION == 2
    assert man["content_sha256"] == export.manifest_digest(man)
    assert man["pattern"] == "2:4" and man["sparse_2_4"] is True


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["model"]["config"].update(heads=8),  # the edit: heads 4 -> 8
        lambda m: m.update(tome_r=0),  # the export says tome_r = 2
        lambda m: m.update(tome_r=[2, 3]),
        lambda m: m["model"]["config"].update(ln_eps=1e-5),
        lambda m: m["model"]["config"].update(gelu_approximate="tanh"),
        lambda m: m["model"]["config"].update(patch_size=16),
        lambda m: m["layers"][3].update(execution="dense", reason="edited"),
    ],
)
def test_edited_configuration_is_refused(small_export, edit):
    _logits(small_export)  # loads before the edit
    _edit(small_export, edit)
    with pytest.raises(ManifestError, match="content_sha256 does not match.*edited after export"):
        load_export(small_export)


def test_heads_edit_would_change_the_logits(small_export):
    """The edit the hash refuses is not harmless: resealed, it changes the function."""
    before = _logits(small_export)
    _edit(small_export, lambda m: m["model"]["config"].update(heads=8), reseal=True)
    assert np.abs(_logits(small_export) - before).max() > 1e-3


@pytest.mark.parametrize(
    "version,match",
    [
        (1, "schema_version 1 is older than the 2 this runtime reads.*re-export"),
        (3, "schema_version 3 is newer than the 2 this runtime reads.*upgrade mpjax"),
        ("2", "schema_version '2' is not an integer"),
    ],
)
def test_other_schema_versions_are_refused(small_export, version, match):
    _edit(small_export, lambda m: m.update(schema_version=version), reseal=True)
    with pytest.raises(ManifestError, match=match):
        load_export(small_export)


def test_version_1_manifest_without_digest_is_refused_as_older(small_export):
    _edit(small_export, lambda m: (m.update(schema_version=1), m.pop("content_sha256")))
    with pytest.raises(ManifestError, match="schema_version 1 is older"):
        load_export(small_export)


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda m: m["model"]["config"].update(pool="gap"), r"model\.config\.pool: 'gap'"),
        (lambda m: m["model"]["config"].update(gelu_approximate="x"), "gelu_approximate: 'x'"),
        (lambda m: m["model"].update(input_layout="NHWC"), r"model\.input_layout: 'NHWC'"),
        (lambda m: m["model"]["config"].update(ln_eps=0.0), "ln_eps: 0.0"),
        (lambda m: m.update(dtype="float16"), "is torch.float32, the manifest says float16"),
    ],
)
def test_values_the_runtime_interprets_are_checked(small_export, edit, match):
    _edit(small_export, edit, reseal=True)
    with pytest.raises(ManifestError, match=match):
        load_export(small_export)


def test_sparse_backend_refuses_an_export_without_sparse_layers(params, cfg, tmp_path):
    masks = nm_masks(params, 8, 16, views=tree.select(params, include=BLOCKS))
    man = export.export_vit(params, cfg, tmp_path, masks=masks, patterns="8:16")
    assert man["pattern"] == "8:16" and man["sparse_2_4"] is False
    with pytest.raises(ValueError, match="no layer of this export is marked for 2:4 execution"):
        build_model(tmp_path, dtype=torch.bfloat16, backend="cslt")
