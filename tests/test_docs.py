"""The documentation site: it builds strictly, its pages exist, docstrings point at them.

`make test` runs the strict mkdocs build here, so a broken link, a missing page or an API
reference to a name that no longer exists fails the suite (not just `make docs`).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: Pages other code and docstrings point at; renaming one breaks those references.
PAGES = (
    "index.md",
    "layout.md",
    "method/mp-law.md",
    "method/budgets.md",
    "method/ser.md",
    "method/cast.md",
    "method/lowrank.md",
    "method/distillation.md",
    "method/tome.md",
    "method/macs.md",
    "method/certificates.md",
    "method/l2-theory.md",
    "method/runtime.md",
)
DOCS_PATH = re.compile(r"docs/[A-Za-z0-9_./-]+?\.md")
SPEC_WORD = re.compile(r"\bSPEC\b")


def _python_files() -> list[Path]:
    return sorted((ROOT / "mpjax").rglob("*.py"))


def _docstrings(path: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of the module, class and function docstrings of one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    nodes = [tree] + [
        n
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    ]
    out = []
    for node in nodes:
        doc = ast.get_docstring(node, clean=False)
        if doc:
            out.append((node.body[0].lineno, doc))
    return sorted(out)


@pytest.mark.slow
def test_site_builds_strictly(tmp_path):
    # make test installs the docs extra: a missing mkdocs is a broken set-up, not a skip.
    assert importlib.util.find_spec("mkdocs"), "mkdocs is missing: pip install -e '.[docs]'"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    problems = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if line.startswith(("WARNING", "ERROR")) or "Error" in line
    ]
    assert proc.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(
        problems or (proc.stdout + proc.stderr).splitlines()[-40:]
    )
    assert (tmp_path / "site" / "index.html").is_file()
    for page in PAGES:
        built = page[: -len(".md")] + "/index.html" if page != "index.md" else "index.html"
        assert (tmp_path / "site" / built).is_file(), f"{page} was not rendered"


@pytest.mark.parametrize("page", PAGES)
def test_page_exists(page):
    assert (DOCS / page).is_file(), f"docs/{page} is missing; docstrings and the nav point at it"


def test_every_notebook_is_rendered():
    """Each notebooks/*.ipynb has a docs/notebooks/ link to it (the strict build checks the nav)."""
    notebooks = {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
    linked = {p.name for p in (DOCS / "notebooks").glob("*.ipynb")}
    assert linked == notebooks, (
        f"docs/notebooks/ links {sorted(linked)} but notebooks/ holds {sorted(notebooks)}; "
        "add `ln -s ../../notebooks/NAME.ipynb docs/notebooks/NAME.ipynb` and a nav entry"
    )
    for name in linked:
        link = DOCS / "notebooks" / name
        assert link.resolve() == (ROOT / "notebooks" / name).resolve(), f"{link} points elsewhere"


def test_no_docstring_cites_spec():
    """Docstrings point at docs/ (which ships with the code), not at a SPEC users cannot read."""
    hits = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in _python_files()
        for line, doc in _docstrings(path)
        if SPEC_WORD.search(doc)
    ]
    assert not hits, (
        "docstrings still cite SPEC; point them at docs/method/<page>.md instead: "
        + ", ".join(hits)
    )


def test_docs_paths_in_the_package_exist():
    """Every ``docs/....md`` path written in mpjax's sources names an existing page."""
    missing = [
        f"{path.relative_to(ROOT)}: {ref}"
        for path in _python_files()
        for ref in DOCS_PATH.findall(path.read_text(encoding="utf-8"))
        if not (ROOT / ref).is_file()
    ]
    assert not missing, "references to docs pages that do not exist: " + ", ".join(missing)


def test_home_page_example_is_the_readme_example():
    """The home page shows the README's tested Python example, not a drifting copy."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8").split("## The library", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    assert snippet in (DOCS / "index.md").read_text(encoding="utf-8"), (
        "docs/index.md's Python example differs from README.md's 'The library' snippet; "
        "copy the README's block into docs/index.md"
    )
