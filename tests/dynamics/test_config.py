"""Tests of the dynamics config: JSON round trip, named configs, validation before training."""

import dataclasses
import json
import os

import pytest

from mpjax.dynamics import CONFIGS, Arm, DynamicsConfig, member_strengths, train
from mpjax.dynamics.config import from_dict, to_dict, validate
from mpjax.dynamics.presets import load_config


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
        ({"input_scaling": "minmax"}, "input_scaling"),
        ({"input_max_norm": 0.0}, "input_max_norm"),
        ({"init_scaling": "xavier"}, "init_scaling"),
        ({"init_scaling": "1/width", "widths": (784, 64, 32, 10)}, "widths"),
        ({"sparsify_theta": -0.1}, "sparsify_theta"),
        ({"noise_layers": "first"}, "noise_layers"),
        ({"noise_eps": "var"}, "noise_eps"),
        ({"noise_arm": "MP"}, "noise_arm"),
    ],
)
def test_bad_config_raises_before_training(tmp_path, change, field):
    cfg = dataclasses.replace(DynamicsConfig(), **change)
    out = str(tmp_path / "never")
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        train(cfg, out, progress=False)
    assert not os.path.exists(out)


def test_config_json_round_trip_and_errors(tmp_path, tiny):
    for name in CONFIGS:
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


FAITHFUL = {
    "table_faithful": "table",
    "outer_faithful": "outer",
    "outer_faithful_n2": "outer",
}


@pytest.mark.parametrize("name", sorted(FAITHFUL))
def test_cpu_sizes_change_only_width_data_size_and_epochs(name):
    paper, cpu = load_config(name), load_config(name + "_cpu")
    differ = {
        f.name
        for f in dataclasses.fields(DynamicsConfig)
        if getattr(paper, f.name) != getattr(cpu, f.name)
    }
    assert differ <= {"name", "widths", "scaling_widths", "n_train", "epochs"}, differ
    assert "epochs" in differ  # the CPU size is shorter ...
    assert differ & {"widths", "scaling_widths"}  # ... and narrower
    assert len(cpu.seeds) >= 3 and len(paper.seeds) >= 3


def test_faithful_configs_follow_the_papers_protocols():
    t = load_config("table_faithful")
    assert t.widths == (784, 3000, 3000, 3000, 3000, 500, 10) and t.activation == "relu"
    assert (t.lr, t.lr_decay, t.lr_decay_every, t.momentum, t.epochs) == (0.01, 0.96, 4, 0.9, 100)
    assert {(a.name, a.l1, a.l2, a.mp) for a in t.arms} == {
        ("none", 0, 0, False),
        ("MP", 0, 0, True),
        ("L1+L2", 1e-6, 1e-6, False),
        ("MP+L1+L2", 1e-6, 1e-6, True),
        ("MP+L2", 0, 1e-6, True),
    }
    assert (t.prune_every, t.prune_horizon, t.split) == (4, 200.0, True) and t.sparsify_theta > 0
    assert (t.noise_layers, t.noise_eps, t.noise_arm) == ("non_final", "std", "MP+L1+L2")
    assert t.noise_levels[0] == 0 and t.noise_levels[-1] == pytest.approx(0.01)
    assert len(t.noise_levels) >= 20
    for name, init in (("outer_faithful", "1/width"), ("outer_faithful_n2", "1/width^2")):
        o = load_config(name)
        assert (o.init_scaling, o.g, o.input_scaling, o.input_max_norm) == (
            init,
            1.0,
            "max_norm",
            0.05,
        )
        assert [(a.l1, a.l2, a.mp) for a in o.arms] == [(1e-6, 0.0, False)]  # SGD + L1
        assert o.optimizer == "sgd" and o.epochs == 200
        assert min(o.scaling_widths) == 500 and max(o.scaling_widths) == 30000
