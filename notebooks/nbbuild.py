"""Shared by the ``build_*.py`` scripts: turn a list of cells into an executed notebook.

Usage from a builder: ``nbbuild.main(CELLS, "01_mp_law.ipynb")`` where ``CELLS`` is a list of
``("md" | "code", source)`` pairs. ``python build_XX.py`` executes the notebook (on the
config chosen by ``MPJAX_NOTEBOOK_CONFIG``, default full) and saves it with its outputs;
``--no-execute`` writes the cells only.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def build(cells: Sequence[tuple[str, str]]) -> nbformat.NotebookNode:
    """The notebook object (no outputs) from ``(kind, source)`` cells."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
        for kind, src in cells
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def main(cells: Sequence[tuple[str, str]], name: str, argv: list[str] | None = None) -> None:
    """Build, execute (unless ``--no-execute``) and write ``notebooks/<name>``."""
    parser = argparse.ArgumentParser(description=f"Build notebooks/{name}.")
    parser.add_argument("--no-execute", action="store_true", help="write the cells only")
    args = parser.parse_args(argv)
    nb = build(cells)
    if not args.no_execute:
        started = time.perf_counter()
        NotebookClient(
            nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
        ).execute()
        print(f"executed in {time.perf_counter() - started:.1f} s")
    nbformat.write(nb, HERE / name)
    print("wrote", HERE / name)
