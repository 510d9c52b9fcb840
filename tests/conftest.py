"""Shared fixtures: seeded numpy generators and JAX keys, CPU only."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# the CLI's persistent compilation cache stays off in tests (never the user's ~/.cache)
os.environ.setdefault("MPJAX_NO_COMPILE_CACHE", "1")
# figures are drawn in the test process; tests/cli/test_plot_worker.py turns the worker on
os.environ.setdefault("MPJAX_PLOT_WORKER", "0")

import hypothesis  # noqa: E402,F401  (imported before orbax: avoids a CPython 3.11.7 AST bug in pytest's summary)
import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy generator (the same stream in every test)."""
    return np.random.default_rng(0)


@pytest.fixture
def key() -> jax.Array:
    """A seeded JAX PRNG key."""
    return jax.random.key(0)
