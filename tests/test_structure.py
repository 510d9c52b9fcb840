"""The shape of the house: no import cycle, commands only in the CLI, modules of readable size.

These read the source with :mod:`ast` (nothing is imported), so they hold for code paths that
no other test runs, function-level imports included.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "mpjax"
MAX_LINES = 450  # "about 400": a module past this is two concepts


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imported_modules(name: str, path: Path) -> set[str]:
    """mpjax modules that ``name`` imports anywhere in its body (a submodule when one is named)."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "mpjax"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "mpjax":
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                out.add(sub if sub in MODULES else source)
    return {m for m in out if m in MODULES and m != name}


GRAPH = {name: imported_modules(name, path) for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None (depth-first search, colours)."""
    colour, stack = {}, []

    def visit(node):
        colour[node] = "grey"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == "grey":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in colour and (found := visit(nxt)):
                return found
        stack.pop()
        colour[node] = "black"
        return None

    for node in sorted(graph):
        if node not in colour and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_graph_sees_function_level_and_submodule_imports():
    assert "mpjax.mp.fits" in GRAPH["mpjax.mp.analysis"]
    assert all(GRAPH[m] <= set(MODULES) for m in GRAPH)


def test_no_import_cycle_among_mpjax_modules():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_only_the_cli_parses_argv(name):
    if name == "mpjax.cli" or name.startswith("mpjax.cli."):
        return
    tree = ast.parse(MODULES[name].read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            assert "argparse" not in names, f"{name} imports argparse: commands live in mpjax/cli"
        if isinstance(node, ast.Attribute) and node.attr == "argv":
            assert not (isinstance(node.value, ast.Name) and node.value.id == "sys"), (
                f"{name} reads sys.argv: commands live in mpjax/cli"
            )


def top_level_imports(path: Path) -> list[ast.stmt]:
    """Import statements that run when the module is imported (not those inside functions)."""
    out, todo = [], list(ast.parse(path.read_text()).body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            todo += [n for field in ("body", "orelse", "finalbody", "handlers") for n in getattr(node, field, [])]
        elif isinstance(node, ast.ExceptHandler):
            todo += node.body
    return out


@pytest.mark.parametrize("package", ["mpjax.arch", "mpjax.torch_runtime", "mpjax.export"])
def test_numpy_only_packages_import_no_jax(package):
    """arch/, torch_runtime/ and export (which torch_runtime uses) import no JAX when imported.

    arch/ and torch_runtime/ import nothing of mpjax but arch, export and themselves, anywhere;
    export may reach the JAX side inside a function (flattening a Flax tree), never at import.
    """
    jax_like = {"jax", "flax", "optax", "orbax"}
    allowed = ("mpjax.arch", "mpjax.export", "mpjax.torch_runtime")
    names = [m for m in MODULES if m == package or m.startswith(package + ".")]
    assert names
    for name in names:
        for node in top_level_imports(MODULES[name]):
            if isinstance(node, ast.Import):
                roots = {a.name for a in node.names}
            elif node.level:
                continue
            else:
                roots = {node.module or ""} | {f"{node.module}.{a.name}" for a in node.names}
            assert not {r.split(".")[0] for r in roots} & jax_like, f"{name} imports {roots}"
            mpjax_roots = {r for r in roots if r.startswith("mpjax.")}
            assert all(r.startswith(allowed) for r in mpjax_roots), f"{name} imports {mpjax_roots}"
        if package != "mpjax.export":
            assert all(m.startswith(allowed) or m == "mpjax" for m in GRAPH[name]), (
                f"{name} imports {sorted(GRAPH[name])}: only arch, export and torch_runtime allowed"
            )


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_readable(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by concept (<= ~400)"
