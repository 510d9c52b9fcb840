"""The public surface: every exported name exists and has a docstring."""

import inspect

import mpjax


def test_all_names_resolve_and_are_documented():
    missing = [name for name in mpjax.__all__ if not hasattr(mpjax, name)]
    assert not missing
    undocumented = [
        name
        for name in mpjax.__all__
        if name != "__version__" and not inspect.getdoc(getattr(mpjax, name))
    ]
    assert not undocumented, f"public names without a docstring: {undocumented}"


def test_version():
    assert mpjax.__version__.count(".") == 2
