"""Every notebook runs top to bottom on its small config; a failed assertion fails CI.

The kernel is this interpreter (written to a private kernelspec that shadows any user-level
one), so notebooks see exactly the environment the tests run in.
"""

import importlib.util
import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NB_DIR = Path(__file__).parents[1] / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))
BUILDERS = sorted(NB_DIR.glob("build_*.py"))


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = root / "kernels" / "mpjax-test"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "mpjax test kernel",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(root)
    os.environ["MPJAX_NOTEBOOK_CONFIG"] = "small"
    os.environ.setdefault("MPLBACKEND", "Agg")
    yield "mpjax-test"
    if old is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = old


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, kernel_env, tmp_path):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, kernel_name=kernel_env, timeout=600, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()


def test_notebooks_exist_and_keep_their_plots():
    assert len(NOTEBOOKS) >= 1
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        images = [
            out
            for cell in nb.cells
            if cell.cell_type == "code"
            for out in cell.get("outputs", [])
            if "image/png" in out.get("data", {})
        ]
        assert images, f"{path.name} has no plot outputs saved; execute and save it."


def _built_cells(builder: Path) -> list[tuple[str, str]]:
    """``(cell_type, source)`` of the notebook a ``build_*.py`` script writes (not executed)."""
    sys.path.insert(0, str(NB_DIR))  # the builders import nbbuild
    try:
        spec = importlib.util.spec_from_file_location(f"_nb_{builder.stem}", builder)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # defines the cells; __main__ is not run
    finally:
        sys.path.remove(str(NB_DIR))
    cells = getattr(module, "CELLS", None) or getattr(module, "cells", None)
    assert cells, f"{builder.name} defines no CELLS list"
    nb = module.nbbuild.build(cells)
    return [(c.cell_type, c.source) for c in nb.cells]


@pytest.mark.parametrize("builder", BUILDERS, ids=[b.name for b in BUILDERS])
def test_builder_regenerates_its_committed_notebook(builder):
    """Each ``notebooks/build_NN_*.py`` rebuilds ``notebooks/NN_*.ipynb`` cell for cell
    (types and sources; outputs are not compared), so the committed notebook is the script's."""
    target = NB_DIR / (builder.stem.removeprefix("build_") + ".ipynb")
    assert target.exists(), f"{builder.name}: no {target.name}; run the builder"
    built = _built_cells(builder)
    committed = [(c.cell_type, c.source) for c in nbformat.read(target, as_version=4).cells]
    assert len(built) == len(committed), (
        f"{target.name}: {len(committed)} cells, builder {len(built)}"
    )
    for i, (b, c) in enumerate(zip(built, committed, strict=True)):
        assert b == c, f"{target.name} cell {i} differs from {builder.name}; rebuild the notebook"


def test_every_notebook_has_a_builder():
    names = {b.stem.removeprefix("build_") for b in BUILDERS}
    assert {p.stem for p in NOTEBOOKS} == names
