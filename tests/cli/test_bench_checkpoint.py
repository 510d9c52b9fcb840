"""``mpjax bench checkpoint``: the synthetic sharded checkpoint and the checks before writing."""

import argparse
import shutil
import sys
from collections import namedtuple

import numpy as np
import pytest

from mpjax import lazy
from mpjax.cli.bench import checkpoint


def test_written_checkpoint_is_the_sharded_layout_it_announces(tmp_path):
    n = checkpoint.write_checkpoint(tmp_path, blocks=3, width=64, head_dim=16)
    assert n == 3 * (64 // 16) * 4 == 48
    assert len(list(tmp_path.glob("model-*-of-00003.safetensors"))) == 3
    t = lazy.open_safetensors(tmp_path)
    assert len(t.paths) == n and t.nbytes() == checkpoint.checkpoint_bytes(3, 64, 16)
    assert {str(t.stored_dtype(p)) for p in t.paths} == {"bfloat16"}
    q, o = (
        "model.layers.2.self_attn.heads.1.q_proj.weight",
        "model.layers.0.self_attn.heads.3.o_proj.weight",
    )
    assert t.shape(q) == (16, 64) and t.shape(o) == (64, 16)
    w = t.load([q])[q]  # block 2 of 3 is the base block scaled by 1 + 2/3, N(0, 1/width)
    assert 0.8 < w.std() * np.sqrt(64) / (1 + 2 / 3) < 1.2


def test_bad_sizes_and_a_full_disk_are_refused_before_writing(tmp_path, monkeypatch):
    args = argparse.Namespace(blocks=2, width=100, head_dim=16, dir=str(tmp_path))
    with pytest.raises(ValueError, match="--head-dim 16: need"):
        checkpoint._check(args, 10)
    args.width = 64
    checkpoint._check(args, 10)  # fits
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(0, 0, 5 << 30))
    with pytest.raises(ValueError, match="--dir .*5.4 GB free"):
        checkpoint._check(args, 8 << 30)
    assert list(tmp_path.iterdir()) == []


def test_peak_rss_reports_the_child_not_this_process():
    hog = "import numpy as np; a = np.ones(300_000_000 // 8); print(a.sum())"
    big, _, rc = checkpoint.peak_rss([sys.executable, "-c", hog])
    small, _, rc2 = checkpoint.peak_rss([sys.executable, "-c", "pass"])
    assert rc == rc2 == 0
    assert big > 0.3 > small  # 300 MB allocated in the first child only
