"""Tests for mpjax.checkpoint: round trips, abstract targets, damaged and foreign files."""

from __future__ import annotations

import json
import os

import hypothesis  # noqa: F401  (imported before orbax runs: CPython 3.11.7 AST bug)
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mpjax import checkpoint


def _params(rng: np.random.Generator) -> dict:
    return {
        "Dense_0": {
            "kernel": jnp.asarray(rng.normal(size=(6, 5)), jnp.float32),
            "bias": jnp.zeros(5),
        },
        "Dense_1": {
            "kernel": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32),
            "bias": jnp.ones(3),
        },
    }


def _masks(params: dict) -> dict:
    return {
        "Dense_0": {"kernel": params["Dense_0"]["kernel"] > 0, "bias": None},
        "Dense_1": {"kernel": None, "bias": None},
    }


def _tree_equal(a, b) -> bool:
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    return ta == tb and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True)
    )


def test_params_round_trip_with_none_masks(tmp_path, rng):
    params = _params(rng)
    masks = _masks(params)
    checkpoint.save_params(tmp_path / "m", params, masks, meta={"acc": 0.9})
    got_p, got_m, meta = checkpoint.restore_params(
        tmp_path / "m", target=jax.eval_shape(lambda: params)
    )
    assert _tree_equal(got_p, params)
    assert got_m["Dense_1"]["kernel"] is None and got_m["Dense_0"]["bias"] is None
    assert got_m["Dense_0"]["kernel"].dtype == jnp.bool_
    assert _tree_equal(got_m, masks)
    assert meta == {"acc": 0.9}
    # Without a target the nested dict comes back as stored; no masks -> None.
    checkpoint.save_params(tmp_path / "m", params)  # replaces the previous checkpoint
    got_p, got_m, _ = checkpoint.restore_params(tmp_path / "m")
    assert _tree_equal(got_p, params) and got_m is None


def test_failed_save_keeps_previous_checkpoint(tmp_path, rng, monkeypatch):
    params = _params(rng)
    checkpoint.save_params(tmp_path / "m", params, meta={"v": 1})
    real_save = checkpoint.ocp.Checkpointer.save

    def crash_after_writing(self, *args, **kwargs):
        real_save(self, *args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.ocp.Checkpointer, "save", crash_after_writing)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_params(tmp_path / "m", jax.tree.map(lambda x: x + 1, params), meta={"v": 2})
    monkeypatch.undo()
    got, _, meta = checkpoint.restore_params(tmp_path / "m")
    assert meta == {"v": 1} and _tree_equal(got, params)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no debris left


def test_shape_mismatch_names_parameter(tmp_path, rng):
    params = _params(rng)
    checkpoint.save_params(tmp_path / "m", params)
    bad = jax.tree.map(lambda x: x, params)
    bad["Dense_1"]["kernel"] = jnp.zeros((5, 4))
    with pytest.raises(ValueError, match="Dense_1/kernel"):
        checkpoint.restore_params(tmp_path / "m", target=bad)


def test_foreign_directory_is_refused_and_untouched(tmp_path, rng):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "weights.bin").write_bytes(b"not ours")
    with pytest.raises(ValueError, match="foreign"):
        checkpoint.restore_params(foreign)
    with pytest.raises(ValueError, match=str(foreign)):
        checkpoint.save_params(foreign, _params(rng))
    assert (foreign / "weights.bin").read_bytes() == b"not ours"


def _state(params, masks):
    tx = optax.adamw(1e-2)
    return {
        "params": params,
        "masks": masks,
        "opt_state": tx.init(params),
        "step": jnp.asarray(3, jnp.int32),
        "rng": jax.random.PRNGKey(7),
    }


def test_train_checkpointer_round_trip_abstract_target(tmp_path, rng):
    params = _params(rng)
    state = _state(params, _masks(params))
    # make the optimizer state non-trivial
    grads = jax.tree.map(jnp.ones_like, params)
    _, opt_state = optax.adamw(1e-2).update(grads, state["opt_state"], params)
    state["opt_state"] = opt_state
    ckpt = checkpoint.TrainCheckpointer(tmp_path / "run", save_every=2)
    assert not ckpt.save(1, state, {"epoch": 0, "batch": 1})  # not due
    assert ckpt.save(2, state, {"epoch": 0, "batch": 2})
    got, meta = ckpt.restore(jax.eval_shape(lambda: state))
    assert meta == {"epoch": 0, "batch": 2}
    assert _tree_equal(got, state)
    assert got["masks"]["Dense_1"]["kernel"] is None
    # typed PRNG keys survive too
    ckpt.save(4, {"k": jax.random.key(3)}, {}, force=True)
    got, _ = ckpt.restore({"k": jax.random.key(0)})
    assert np.array_equal(jax.random.key_data(got["k"]), jax.random.key_data(jax.random.key(3)))
    ckpt.close()


def test_truncated_checkpoint_clear_error_previous_untouched(tmp_path, rng):
    params = _params(rng)
    state = _state(params, _masks(params))
    ckpt = checkpoint.TrainCheckpointer(tmp_path / "run", save_every=1)
    ckpt.save(1, state, {"n": 1})
    state2 = jax.tree.map(lambda x: x + 1 if x.dtype == jnp.float32 else x, state)
    ckpt.save(2, state2, {"n": 2})
    before = sorted(p.name for p in (tmp_path / "run" / "1").rglob("*"))
    # truncate every data file of step 2
    for f in (tmp_path / "run" / "2" / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and f.name not in ("_METADATA",):
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    with pytest.raises(ValueError, match=r"run/2.*(truncated|corrupt)"):
        ckpt.restore(jax.eval_shape(lambda: state))
    # a foreign meta record is refused too
    (tmp_path / "run" / "2" / "meta" / "metadata").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="foreign"):
        ckpt.restore(state)
    assert sorted(p.name for p in (tmp_path / "run" / "1").rglob("*")) == before
    got, meta = ckpt.restore(jax.eval_shape(lambda: state), step=1)
    assert meta == {"n": 1} and _tree_equal(got, state)
    ckpt.close()


def test_train_checkpointer_shape_mismatch(tmp_path, rng):
    params = _params(rng)
    ckpt = checkpoint.TrainCheckpointer(tmp_path / "run", save_every=1)
    ckpt.save(1, {"params": params}, {})
    bad = {"params": dict(params, Dense_0={"kernel": jnp.zeros((6, 7)), "bias": jnp.zeros(5)})}
    with pytest.raises(ValueError, match="Dense_0/kernel"):
        ckpt.restore(bad)


_RESTORE_DAMAGED = """
import sys, time
from mpjax import checkpoint
for d in sys.argv[1:]:
    try:
        checkpoint.restore_params(d)
        print("restored", d)
    except ValueError as e:
        print(e)
time.sleep(1.0)  # TensorStore reads still in flight finish here
"""


def test_damaged_checkpoint_is_one_quiet_line(tmp_path, rng):
    """Truncated or emptied data files: one line naming the directory, no TensorStore dump,
    and no tracebacks or asyncio logs of the reads still in flight."""
    import shutil
    import subprocess
    import sys

    params = {f"Dense_{i}": {"kernel": jnp.asarray(rng.normal(size=(16, 8)), jnp.float32),
                             "bias": jnp.zeros(8)} for i in range(20)}  # fmt: skip
    checkpoint.save_params(tmp_path / "ok", params)
    for mode in ("truncated", "emptied"):
        shutil.copytree(tmp_path / "ok", tmp_path / mode)
        for f in (tmp_path / mode / "params").rglob("*"):
            if f.is_file() and not f.name.startswith("_") and f.name != "commit_success.txt":
                f.write_bytes(f.read_bytes()[: f.stat().st_size // 2] if mode == "truncated" else b"")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    run = subprocess.run(
        [sys.executable, "-c", _RESTORE_DAMAGED, str(tmp_path / "truncated"),
         str(tmp_path / "emptied")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 2, run.stdout
    for mode, line in zip(("truncated", "emptied"), lines, strict=True):
        assert line.startswith(f"{tmp_path / mode}: checkpoint is truncated or corrupt"), line
        assert "tensorstore_spec" not in line and len(line) < 400, line
    for noise in ("Traceback", "never retrieved", "tensorstore_spec"):
        assert noise not in run.stderr, run.stderr[-2000:]


def test_replacing_a_checkpoint_never_deletes_files_put_beside_it(tmp_path, rng):
    params = _params(rng)
    target = tmp_path / "m"
    checkpoint.save_params(target, params)
    (target / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match=r"notes\.txt.*did not write"):
        checkpoint.save_params(target, params)
    assert (target / "notes.txt").read_text() == "keep"
    (target / "notes.txt").unlink()
    checkpoint.save_params(target, params)  # our own checkpoint alone is still replaced
