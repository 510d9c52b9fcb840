"""Fixtures of the dynamics tests: a tiny teacher config and its uninterrupted 3-epoch run."""

import pytest

from mpjax.dynamics import Arm, DynamicsConfig, train

#: Three members (none / L2 / MP+L2) of a 12-40-32-3 net on the synthetic teacher: seconds.
TINY = DynamicsConfig(
    name="tiny",
    widths=(12, 40, 32, 3),
    dataset="teacher",
    n_train=256,
    n_test=128,
    teacher_rank=2,
    teacher_hidden=8,
    batch_size=64,
    epochs=3,
    lr=0.05,
    top_k=3,
    prune_every=1,
    prune_horizon=4.0,
    fit_error_max=1.0,
    arms=(Arm("none"), Arm("L2", l2=1e-2), Arm("MP+L2", l2=1e-2, mp=True)),
)


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
