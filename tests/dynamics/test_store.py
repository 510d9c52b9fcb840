"""Tests of the on-disk run: records, index rules, checkpoints, crash recovery."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mpjax.dynamics import load_run, store, train


def test_interrupted_run_loses_at_most_the_epoch_in_progress(tmp_path, tiny, base, monkeypatch):
    real_save = store.save_checkpoint

    def crash_at_2(run_dir, epoch, state):
        if epoch == 2:  # records of epoch 2 are on disk, its checkpoint is not
            raise KeyboardInterrupt
        real_save(run_dir, epoch, state)

    monkeypatch.setattr(store, "save_checkpoint", crash_at_2)
    out = str(tmp_path / "crash")
    with pytest.raises(KeyboardInterrupt):
        train(tiny, out, progress=False)
    assert [e["epoch"] for e in store.read_index(out)] == [0, 1]
    monkeypatch.setattr(store, "save_checkpoint", real_save)
    train(tiny, out, resume=True, progress=False)
    assert [e["epoch"] for e in store.read_index(out)] == [0, 1, 2, 3]
    np.testing.assert_allclose(
        load_run(out).metrics["test_ce"], load_run(base).metrics["test_ce"], rtol=1e-5
    )


def test_epoch_records_round_trip_and_a_damaged_file_says_how_to_recover(tmp_path):
    run_dir = str(tmp_path)
    store.write_epoch(run_dir, 3, {"Dense_0/kernel/s": np.arange(4.0)}, {"lr": 0.1})
    rec = store.read_epoch(run_dir, 3)
    np.testing.assert_array_equal(rec["Dense_0/kernel/s"], np.arange(4.0))
    assert int(rec["epoch"]) == 3 and '"lr": 0.1' in str(rec["summary_json"])
    with open(os.path.join(run_dir, store.epoch_file(3)), "wb") as f:
        f.write(b"not a zip")
    with pytest.raises(
        ValueError, match=r"epoch_00003\.npz: cannot read a record file .* --resume"
    ):
        store.read_epoch(run_dir, 3)


def test_index_epochs_must_increase_and_a_gap_is_reported(tmp_path):
    run_dir = str(tmp_path)
    store.write_index(run_dir, [{"epoch": 0}, {"epoch": 1}])
    assert [e["epoch"] for e in store.read_index(run_dir)] == [0, 1]
    with pytest.raises(ValueError, match="increasing and unique"):
        store.write_index(run_dir, [{"epoch": 1}, {"epoch": 1}])
    with pytest.raises(ValueError, match="missing record of committed epoch 0"):
        store.rebuild_index(run_dir, 0)


def test_checkpoint_restores_against_an_abstract_target(tmp_path):
    state = ({"w": jnp.ones((2, 3))}, (jnp.zeros(()), jnp.arange(4, dtype=jnp.int32)))
    assert store.load_checkpoint(str(tmp_path), state) is None
    store.save_checkpoint(str(tmp_path), 7, state)
    epoch, back = store.load_checkpoint(str(tmp_path), jax.eval_shape(lambda: state))
    assert epoch == 7
    for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(state), strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    wrong = ({"w": jnp.ones((3, 2))}, state[1])
    with pytest.raises(ValueError, match="leaf 0 has shape"):
        store.load_checkpoint(str(tmp_path), wrong)
    with pytest.raises(ValueError, match="3 leaves stored, the config needs 1"):
        store.load_checkpoint(str(tmp_path), {"w": jnp.ones((2, 3))})
