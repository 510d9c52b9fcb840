"""Fixtures of the dynamics tests: a tiny teacher config and its uninterrupted 3-epoch run."""

import pytest
from dynamics_fixtures import TINY

from mpjax.dynamics import DynamicsConfig, train


@pytest.fixture
def tiny() -> DynamicsConfig:
    """The tiny config (3 epochs, 3 members)."""
    return TINY


@pytest.fixture(scope="session")
def base(tmp_path_factory) -> str:
    """The run directory of the uninterrupted TINY run, shared by the comparisons."""
    out = str(tmp_path_factory.mktemp("dyn") / "base")
    train(TINY, out, progress=False)
    return out


@pytest.fixture
def run_in(tmp_path):
    """``run_in(config, name)``: train ``config`` into ``tmp_path/name`` and return the dir."""

    def run(config: DynamicsConfig, name: str = "run", **kw) -> str:
        out = str(tmp_path / name)
        train(config, out, progress=False, **kw)
        return out

    return run
