"""Distillation across jax.distributed processes: a tiny ViT distilled by 2 CPU processes x
2 devices, one of them killed mid-run and both restarted, ends with the parameters of the
uninterrupted run of 1 process x 4 devices. The 2-process run reads a streamed image folder
(grain, sharded by process, iterator state restored on resume), the reference the in-memory
arrays, so one comparison covers the global mesh, the per-process batch rows, the shared
orbax checkpoint, the stream and both resumes. Each launch is a fresh Python process (about
10-20 s of CPU each), hence the ``slow`` mark."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import hypothesis  # noqa: F401  (imported before orbax runs: CPython 3.11.7 AST bug)
import numpy as np
import pytest
from tiny_net import tiny_data

from mpjax.cli import cluster
from mpjax.training.image_sources import export_image_folder

WORKER = textwrap.dedent(
    """
    import argparse, os, signal, sys
    pid, nproc, port, workdir, out, data, kill_at = sys.argv[1:8]
    pid, nproc, kill_at = int(pid), int(nproc), int(kill_at)
    from mpjax.cli import cluster
    args = argparse.Namespace(num_processes=nproc, process_id=pid,
                              coordinator=f"localhost:{{port}}", init_timeout=40)
    cluster.init_from_args(args, batch_size=16)
    import jax, numpy as np
    sys.path.insert(0, {tests!r})
    from tiny_net import half_masks, small_config, tiny_data
    from mpjax.models import vit
    from mpjax.training import loop, vit_apply_fn
    from mpjax.training.image_sources import ImageFolderSource
    from mpjax.training.stream import ImageStream
    assert jax.device_count() == 4 and jax.process_count() == nproc, jax.devices()
    cfg = vit.ViTConfig(patch_size=3, hidden_size=16, num_layers=1, num_heads=2, mlp_dim=32,
                        image_size=6, channels=1, num_classes=3)
    shapes = jax.eval_shape(lambda: vit.init_params(cfg, jax.random.PRNGKey(0)))
    r = np.random.default_rng(0)  # random weights without compiling the initializers
    teacher, student = [jax.tree.map(lambda s: 0.2 * r.standard_normal(s.shape, np.float32),
                                     shapes) for _ in range(2)]
    if data == "memory":
        images, labels = tiny_data()
        order = np.argsort(labels, kind="stable")  # the image folder's order
        data = (images[order], labels[order])
    else:
        data = ImageStream(ImageFolderSource(data))
    if kill_at >= 0 and pid == nproc - 1:
        step = loop.train_step
        calls = []
        def dying_step(state, batch):
            calls.append(1)
            if len(calls) > kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return step(state, batch)
        loop.train_step = dying_step
    config = small_config(num_steps=8, checkpoint_every=4, augment=True, batch_size=16)
    mine = workdir if pid == 0 else workdir + f".p{{pid}}"  # process 0's folder is used
    params, _ = loop.distill(student, teacher, half_masks(student), vit_apply_fn(cfg), data,
                             config, mine)
    np.savez(out + f".p{{pid}}.npz", *[np.asarray(x) for x in jax.tree.leaves(params)])
    np.savez(out + ".init.npz", *jax.tree.leaves(student))
    """
)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(tmp, nproc, devices, workdir, out, data, kill_at=-1):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")  # fmt: skip
    script = WORKER.format(tests=os.path.dirname(__file__))
    port = str(_port())
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                script,
                str(p),
                str(nproc),
                port,
                str(tmp / workdir),
                str(tmp / out),
                str(data),
                str(kill_at),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for p in range(nproc)
    ]


def _finish(procs, timeout=500):
    outs = [p.communicate(timeout=timeout) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    return [err for _, err in outs]


def _leaves(path):
    with np.load(path) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


@pytest.mark.slow
def test_two_processes_resume_after_a_kill_and_match_one(tmp_path):
    folder = export_image_folder(*tiny_data(), tmp_path / "folder")
    # the reference (1 process x 4 devices, arrays) beside a streamed 2 x 2 run whose
    # process 1 is killed at step 6 (checkpoint at step 4) ...
    ref = _start(tmp_path, 1, 4, "ref", "ref", "memory")
    cut = _start(tmp_path, 2, 2, "cut", "cut", folder, kill_at=5)
    cut[1].communicate(timeout=500)
    assert cut[1].returncode == -signal.SIGKILL
    cut[0].kill()  # process 0 waits in the step's collective: kill it too
    cut[0].communicate()
    _finish(ref)
    assert not (tmp_path / "cut.p0.npz").exists()
    assert [p.name for p in (tmp_path / "cut/input_state").iterdir()] != []
    # ... restarted as a whole, resumes from step 4 and ends where the reference did
    errs = _finish(_start(tmp_path, 2, 2, "cut", "resumed", folder))
    assert all("resuming from step 4" in err for err in errs)
    one, two = _leaves(tmp_path / "ref.p0.npz"), _leaves(tmp_path / "resumed.p0.npz")
    # Adam amplifies the float32 differences of the all-reduce order a little: 3e-5 at most
    # here, against weights that moved by 5e-3 or more
    for a, b, c, x in zip(one, two, _leaves(tmp_path / "resumed.p1.npz"),
                          _leaves(tmp_path / "ref.init.npz"), strict=True):  # fmt: skip
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(c, b)  # both processes hold the same parameters
        assert np.abs(a - x).max() > 1e-3  # training moved every leaf (10x the tolerance)
    assert not (tmp_path / "cut.p1").exists()  # process 1 worked in process 0's folder
    rows = {name: [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").open()]
            for name in ("ref", "cut")}  # fmt: skip
    assert [r["step"] for r in rows["cut"]] == list(range(1, 9))  # once each, by process 0
    # the same batches and augmentation: the losses of every step agree
    np.testing.assert_allclose([r["loss"] for r in rows["cut"]],
                               [r["loss"] for r in rows["ref"]], rtol=1e-5)  # fmt: skip
    states = sorted(p.name for p in (tmp_path / "cut/input_state").iterdir())
    assert states == ["4.process0.json", "4.process1.json", "8.process0.json", "8.process1.json"]


def _args(**kw):
    base = dict(num_processes=2, process_id=1, coordinator="localhost:1", init_timeout=1)
    return argparse.Namespace(**{**base, **kw})


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(process_id=2), r"--process-id 2: must lie in 0 \.\. 1"),
        (dict(process_id=-1), "--process-id -1"),
        (dict(num_processes=0), "--num-processes 0: must be >= 1"),
        (dict(coordinator="nohost"), "--coordinator 'nohost': expected HOST:PORT"),
        (dict(coordinator="h:99999"), "expected HOST:PORT"),
        (dict(coordinator=None), "--coordinator: required"),
        (dict(init_timeout=0), "--init-timeout 0"),
    ],
)
def test_bad_cluster_flags_are_named(kw, match, monkeypatch):
    for name in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "JAX_COORDINATOR_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match=match):
        cluster.init_from_args(_args(**kw))


def test_one_process_and_jax_variables(monkeypatch):
    for name in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "JAX_COORDINATOR_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    none = _args(num_processes=None, process_id=None, coordinator=None)
    assert cluster.init_from_args(none) == cluster.Cluster(1, 0, None)
    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("JAX_PROCESS_ID", "7")
    with pytest.raises(ValueError, match="--process-id 7: must lie in 0 .. 3"):
        cluster.init_from_args(none)
    monkeypatch.setenv("JAX_PROCESS_ID", "x")
    with pytest.raises(ValueError, match=r"\$JAX_PROCESS_ID 'x'"):
        cluster.init_from_args(none)


def test_batch_must_split_over_processes_and_devices():
    cluster.check_batch(128, 4, 8)
    with pytest.raises(ValueError, match="--num-processes 3: the batch of 128"):
        cluster.check_batch(128, 3, 6)
    with pytest.raises(ValueError, match="--num-processes 2"):
        cluster.check_batch(128, 2, 6)  # splits over the processes, not over the devices
    with pytest.raises(ValueError, match="--num-processes 3"):
        cluster.init_from_args(_args(num_processes=3), batch_size=128)  # before the network


def test_unreachable_coordinator_fails_fast_and_prune_writes_nothing(tmp_path):
    from mpjax.cli import prune

    port = _port()  # free: nothing listens there
    argv = ["shipped", "--out", str(tmp_path / "out"), "--num-processes", "2",
            "--process-id", "1", "--coordinator", f"localhost:{port}", "--init-timeout", "1"]  # fmt: skip
    with pytest.raises(ValueError, match=f"--coordinator localhost:{port}: nothing answered"):
        prune.main(argv)
    assert not (tmp_path / "out").exists()
