"""The PyTorch example of docs/method/runtime.md (and the README) runs as written and is right:
its input layout and normalisation give the Flax model's logits."""

import re
from pathlib import Path

import numpy as np
import pytest
from vit_fixtures import small_vit_fixtures

pytest.importorskip("torch")

from mpjax import export, tree  # noqa: E402
from mpjax.pruning import apply_masks, nm_masks  # noqa: E402

pytestmark = pytest.mark.torch
DOC = Path(__file__).resolve().parents[2] / "docs" / "method" / "runtime.md"

cfg, params = small_vit_fixtures(hidden_size=64, mlp_dim=128)


def runtime_snippet() -> str:
    """The first ``python`` block under "## Running an export in PyTorch"."""
    section = DOC.read_text().split("## Running an export in PyTorch", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_snippet_runs_and_matches_flax(params, cfg, tmp_path, monkeypatch, capsys):
    import jax

    from mpjax.models import vit
    from mpjax.training import prepare_images

    masks = nm_masks(params, 2, 4, views=tree.select(params, include=["*encoderblock_*/*/kernel"]))
    monkeypatch.chdir(tmp_path)
    export.export_vit(params, cfg, Path("runs/export"), masks=masks)
    namespace: dict = {}
    exec(compile(runtime_snippet(), str(DOC), "exec"), namespace)  # noqa: S102
    pixels, logits = namespace["pixels"], namespace["logits"].numpy()
    assert pixels.dtype == np.uint8 and pixels.shape == (8, 32, 32, 3)
    forward = jax.jit(lambda p, x: vit.ViT(cfg).apply({"params": p}, x))
    ref = np.asarray(forward(apply_masks(params, masks), prepare_images(pixels)))
    np.testing.assert_allclose(logits, ref, atol=1e-4)
    assert capsys.readouterr().out.strip().startswith("tensor([")


def test_readme_shows_the_same_snippet():
    readme = (DOC.parents[2] / "README.md").read_text()
    section = readme.split("## Running an export in PyTorch", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"```python\n(.*?)```", section, re.S).group(1) == runtime_snippet()
