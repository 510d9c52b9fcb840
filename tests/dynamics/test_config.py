"""Tests of the dynamics config: JSON round trip, named configs, validation before training."""

import dataclasses
import json
import os

import pytest

from mpjax.dynamics import Arm, DynamicsConfig, member_strengths, train
from mpjax.dynamics.config import from_dict, load_config, to_dict, validate


@pytest.mark.parametrize(
    "change, field",
    [
        ({"widths": (100, 64, 10)}, "widths[0]"),  # Fashion-MNIST needs 784 inputs
        ({"widths": (784, 64, 7)}, "widths[-1]"),
        ({"widths": (784,)}, "widths"),
        ({"widths": (784, 0, 10)}, "widths"),
        ({"arms": (Arm("bad", l2=-1e-4),)}, "arms[0].l2"),
        ({"arms": (Arm("bad", l1=-1.0),)}, "arms[0].l1"),
        ({"lr": 0.0}, "lr"),
        ({"n_train": 10, "batch_size": 64}, "n_train"),
        ({"activation": "gelu"}, "activation"),
        ({"seeds": (1, 1)}, "seeds"),
    ],
)
def test_bad_config_raises_before_training(tmp_path, change, field):
    cfg = dataclasses.replace(DynamicsConfig(), **change)
    out = str(tmp_path / "never")
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        train(cfg, out, progress=False)
    assert not os.path.exists(out)


def test_config_json_round_trip_and_errors(tmp_path, tiny):
    for name in ("small", "default", "cpu", "paper", "scaling", "noise"):
        cfg = load_config(name)
        assert from_dict(json.loads(json.dumps(to_dict(cfg)))) == cfg
    with pytest.raises(ValueError, match="unknown keys"):
        from_dict({"widths": [784, 10], "l2": 1e-4})
    with pytest.raises(ValueError, match="teacher_rank"):
        validate(dataclasses.replace(tiny, teacher_rank=20))
    with pytest.raises(ValueError, match="neither a named config"):
        load_config(str(tmp_path / "missing.json"))


def test_member_strengths_follow_the_arm_major_member_order(tiny):
    cfg = dataclasses.replace(tiny, seeds=(0, 1))
    l1, l2 = member_strengths(cfg)
    assert [f"{a.name}/{s}" for a, s in cfg.members][:3] == ["none/0", "none/1", "L2/0"]
    assert l1.tolist() == [0.0] * 6
    assert l2.tolist() == pytest.approx([0.0, 0.0, 1e-2, 1e-2, 1e-2, 1e-2])
