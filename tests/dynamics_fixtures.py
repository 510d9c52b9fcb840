"""The tiny dynamics config shared by the dynamics and ``mpjax dynamics`` CLI tests (a plain
module, not a conftest: ``from dynamics_fixtures import TINY``)."""

from mpjax.dynamics import Arm, DynamicsConfig

#: Three members (none / L2 / MP+L2) of a 12-40-32-3 net on the synthetic teacher, 3 epochs:
#: seconds.
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
