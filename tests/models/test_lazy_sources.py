"""Tests for mpjax.models.lazy_sources: every source opened lazily equals the eager load."""

import json

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file
from vit_files import CFG

from mpjax import checkpoint, lazy, tree
from mpjax.models import convert, lazy_sources, sources
from mpjax.mp import analyze


def assert_same_tree(lazy_tree, eager):
    """Same paths (tree order), shapes and values as the eager tree."""
    flat = tree.flatten(eager)
    assert lazy_tree.paths == list(flat) or sorted(lazy_tree.paths) == sorted(flat)
    assert tree.flatten(lazy_tree.abstract).keys() == flat.keys()
    loaded = lazy_tree.load(list(flat)[::-1])
    for path, value in flat.items():
        np.testing.assert_array_equal(loaded[path], np.asarray(value), err_msg=path)


def test_random_tree_draws_random_init_values_in_any_order():
    eager = tree.flatten(sources.random_init(CFG, seed=5))
    t = lazy_sources.random_tree(CFG, seed=5)
    assert t.paths == list(eager)
    order = np.random.default_rng(0).permutation(len(eager))
    for i in order[:12]:  # out of order, one leaf at a time, some twice
        path = t.paths[i]
        np.testing.assert_array_equal(t.load([path])[path], eager[path], err_msg=path)
    assert_same_tree(t, sources.random_init(CFG, seed=5))
    other = lazy_sources.random_tree(CFG, seed=6).load([t.paths[-1]])[t.paths[-1]]
    assert not np.array_equal(other, eager[t.paths[-1]]) or eager[t.paths[-1]].std() == 0


def test_named_random_init_opens_lazily():
    t, info = lazy_sources.open_source("vit-ti16", seed=2)
    eager, eager_info = sources.load_source("vit-ti16", seed=2)
    assert isinstance(t, lazy.LazyTree) and info == eager_info
    flat = tree.flatten(eager)
    assert t.paths == list(flat)
    path = "Transformer/encoderblock_11/MlpBlock_0/Dense_1/kernel"
    np.testing.assert_array_equal(t.load([path])[path], flat[path])


def test_npz_with_old_names_is_renamed_like_the_eager_loader(params, tmp_path):
    flat = {f"opt/target/{k}": v for k, v in tree.flatten(params).items()}
    pos = "opt/target/Transformer/posembed_input/pos_embedding"
    flat["opt/target/pos_embedding"] = flat.pop(pos)[:, 1:]  # big_vision: no class-token row
    flat = {k.replace("MlpBlock_0", "MlpBlock_3"): v for k, v in flat.items()}
    np.savez(tmp_path / "old.npz", **flat)
    t, info = lazy_sources.open_source(tmp_path / "old.npz")
    eager, eager_info = sources.load_source(tmp_path / "old.npz")
    assert info.renamed == eager_info.renamed and len(info.renamed) > 1
    assert info.config == eager_info.config == CFG
    assert_same_tree(t, eager)


def test_safetensors_single_and_sharded_match_the_eager_load(params, tmp_path):
    state = {k: np.asarray(v) for k, v in convert.flax_to_timm(params, CFG).items()}
    save_file(state, str(tmp_path / "m.safetensors"))
    t, info = lazy_sources.open_source(tmp_path / "m.safetensors")
    eager, eager_info = sources.load_source(tmp_path / "m.safetensors")
    assert (
        (info.kind, info.layout) == (eager_info.kind, eager_info.layout) == ("safetensors", "timm")
    )
    assert_same_tree(t, eager)
    names = sorted(state)
    shard = {n: f"s{i % 2}.safetensors" for i, n in enumerate(names)}
    for s in ("s0.safetensors", "s1.safetensors"):
        save_file({n: state[n].astype(ml_dtypes.bfloat16) for n in names if shard[n] == s},
                  str(tmp_path / s))  # fmt: skip
    (tmp_path / lazy.INDEX_NAME).write_text(json.dumps({"weight_map": shard}))
    t, info = lazy_sources.open_source(tmp_path)
    eager, eager_info = sources.load_source(tmp_path)  # the eager loader reads shards too
    assert info.layout == eager_info.layout == "timm" and info.kind == "safetensors"
    assert_same_tree(t, eager)
    got = t.load([names[0]])[names[0]]
    np.testing.assert_array_equal(
        got, state[names[0]].astype(ml_dtypes.bfloat16).astype(np.float32)
    )


def test_orbax_directory_matches_the_eager_load(params, tmp_path):
    checkpoint.save_params(tmp_path / "ck", params)
    t, info = lazy_sources.open_source(tmp_path / "ck")
    eager, eager_info = sources.load_source(tmp_path / "ck")
    assert info.kind == "orbax" and info.config == eager_info.config == CFG
    assert_same_tree(t, eager)


def test_nan_outside_the_weights_is_refused_when_opened(params, tmp_path):
    flat = tree.flatten(params)
    flat["Transformer/encoder_norm/bias"] = np.full_like(
        flat["Transformer/encoder_norm/bias"], np.nan
    )
    np.savez(tmp_path / "nan.npz", **flat)
    with pytest.raises(ValueError, match="encoder_norm/bias' holds NaN"):
        lazy_sources.open_source(tmp_path / "nan.npz")
    flat = tree.flatten(params)
    key = "Transformer/encoderblock_1/MlpBlock_0/Dense_0/kernel"
    flat[key][3, 5] = np.inf
    np.savez(tmp_path / "inf.npz", **flat)
    t, _ = lazy_sources.open_source(tmp_path / "inf.npz")  # weights are checked when analysed
    assert np.isinf(t.load([key])[key][3, 5])
    with pytest.raises(ValueError, match=f"{key}: weight contains NaN or Inf"):
        analyze(t, progress=False)


def test_unknown_name_and_shipped_follow_the_eager_loader(tmp_path):
    with pytest.raises(ValueError, match="neither an existing path nor a known name"):
        lazy_sources.open_source(tmp_path / "nothing-here")
    with pytest.raises(ValueError, match="unsupported file type"):
        (tmp_path / "w.txt").write_text("x")
        lazy_sources.open_source(tmp_path / "w.txt")
