"""`mpjax.arch`, `mpjax.export` and `mpjax.torch_runtime` import in an interpreter without JAX.

Each check runs in a fresh interpreter where ``import jax`` (and flax, optax, orbax) fails,
as on a GPU machine that only has torch: a module-level JAX import anywhere on the path makes
the subprocess fail.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Setting a sys.modules entry to None makes `import name` raise ImportError.
BLOCK_JAX = "import sys\nfor name in ('jax', 'jaxlib', 'flax', 'optax', 'orbax'):\n    sys.modules[name] = None\n"


def run_without_jax(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-c", BLOCK_JAX + code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_guard_blocks_jax():
    # A negative control: the same interpreter set-up refuses a module that needs JAX.
    res = run_without_jax("import mpjax.models")
    assert res.returncode != 0 and "import of jax halted" in res.stderr


def test_arch_and_export_import_without_jax():
    res = run_without_jax(
        "import mpjax, mpjax.arch, mpjax.export\n"
        "rep = mpjax.arch.vit_macs('vit-b16')\n"
        "assert round(rep.total / 1e9, 3) == 17.564\n"
        "assert mpjax.export.semi_structured_eligible(3072, 768)[0]\n"
        "assert not any(m == 'jax' or m.startswith('jax.') for m in sys.modules if sys.modules[m])\n"
    )
    assert res.returncode == 0, res.stderr


def test_torch_runtime_imports_without_jax():
    pytest.importorskip("torch")
    res = run_without_jax(
        "import mpjax.torch_runtime, mpjax.arch\n"
        "from mpjax.torch_runtime import TorchViT, bench\n"
        "model = TorchViT(mpjax.arch.ViTDims(image_size=32, patch_size=8, hidden=32, layers=1,\n"
        "                                    mlp=64, heads=4, num_classes=3), tome_r=2)\n"
        "import torch\n"
        "assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3)\n"
        "assert bench.versions()['mpjax'] == mpjax.__version__\n"
        "loaded = [m for m in sys.modules if sys.modules[m] is not None]\n"
        "assert not [m for m in loaded if m.split('.')[0] in ('jax', 'flax', 'optax')], loaded\n"
        "assert 'mpjax.models' not in loaded, 'torch_runtime must not import mpjax.models'\n"
    )
    assert res.returncode == 0, res.stderr
