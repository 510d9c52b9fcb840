"""The public surface: every exported name exists and has a docstring, and ``import mpjax`` is light."""

import importlib
import inspect
import subprocess
import sys

import pytest

import mpjax

PACKAGES = (
    "mpjax",
    "mpjax.arch",
    "mpjax.certificates",
    "mpjax.cli",
    "mpjax.dynamics",
    "mpjax.models",
    "mpjax.mp",
    "mpjax.pipeline",
    "mpjax.pruning",
    "mpjax.training",
)


@pytest.mark.parametrize("package", PACKAGES)
def test_all_names_resolve_and_are_documented(package):
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names that do not resolve: {missing}"
    undocumented = [
        name
        for name in module.__all__
        if not name.startswith("__")
        and (inspect.isfunction(getattr(module, name)) or inspect.isclass(getattr(module, name))
             or inspect.ismodule(getattr(module, name)))
        and not inspect.getdoc(getattr(module, name))
    ]
    assert not undocumented, f"{package}: public names without a docstring: {undocumented}"


def test_pinned_names():
    assert callable(mpjax.mp.fit) and callable(mpjax.analyze)
    assert {"edge", "sigma2", "n_spikes", "bulk_fraction", "fit_error"} <= set(mpjax.mp.MPFit._fields)


def test_import_mpjax_is_light():
    code = (
        "import sys, mpjax; "
        "heavy = sorted(m for m in ('jax', 'flax', 'torch', 'optax', 'matplotlib') if m in sys.modules); "
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"`import mpjax` imported {done.stdout.strip()}"


def test_mp_analysis_imports_no_matplotlib_until_plots_are_drawn():
    code = (
        "import sys, mpjax.mp; a = 'matplotlib' in sys.modules; "
        "mpjax.mp.plots.esd_panel; print(a, 'matplotlib' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"]


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mpjax.nope  # noqa: B018


def test_version():
    assert mpjax.__version__.count(".") == 2


def test_mp_lazy_names_match_the_imports_static_tools_read():
    """``mpjax.mp`` lists its names three times for three readers (the ``TYPE_CHECKING``
    imports for the API docs, ``_NAMES`` for run time, ``__all__``): they must agree."""
    import ast

    import mpjax.mp as mp

    source = ast.parse(inspect.getsource(mp))
    block = next(n for n in source.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test))
    static = {
        alias.asname or alias.name: node.module.rsplit(".", 1)[-1]
        for node in block.body
        if isinstance(node, ast.ImportFrom) and node.module != "mpjax.mp"
        for alias in node.names
    }
    assert static == mp._NAMES
    modules = {a.name for n in block.body if isinstance(n, ast.ImportFrom) and n.module == "mpjax.mp" for a in n.names}
    assert set(mp.__all__) == set(static) | modules and modules <= set(mp._SUBMODULES)
