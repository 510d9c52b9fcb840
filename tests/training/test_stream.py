"""Tests for mpjax.training.stream: the grain pipeline gives the in-memory batches (order and
augmentation), shards by process, and resumes from a saved iterator state."""

from __future__ import annotations

import hypothesis  # noqa: F401  (imported before orbax/grain run: CPython 3.11.7 AST bug)
import jax
import numpy as np
import pytest

from mpjax import data as data_lib
from mpjax.training import DistillConfig, prepare_images
from mpjax.training.image_sources import (
    ArrayRecordSource,
    ImageFolderSource,
    export_array_record,
    export_image_folder,
)
from mpjax.training.runs import stream_batches
from mpjax.training.stream import ImageStream, _FromStep, _StepBlocks, augment_rows

N = 240  # Fashion-MNIST images exported per test


@pytest.fixture(scope="module")
def fmnist():
    try:
        images, labels = data_lib.load_fashion_mnist("train")
    except ValueError:
        pytest.skip("Fashion-MNIST is not installed")
    return images[:N], labels[:N]


@pytest.fixture(scope="module")
def folder(fmnist, tmp_path_factory):
    return export_image_folder(*fmnist, tmp_path_factory.mktemp("fmnist") / "train")


def _config(**kw) -> DistillConfig:
    return DistillConfig(**{**dict(batch_size=32, seed=3, augment=True, crop_padding=2), **kw})


def _in_memory(images, labels, config, num_steps):
    """The batches train() builds from arrays: data order, then the step's augmentation."""
    spe = data_lib.num_batches(len(images), config.batch_size)
    out = []
    for step, (x, y) in stream_batches(images, labels, config, 0, num_steps, spe):
        x = prepare_images(x)
        if config.augment:
            key = jax.random.fold_in(jax.random.PRNGKey(config.seed), step)
            x = data_lib.augment(key, x, config.crop_padding, config.flip)
        out.append((np.asarray(x), np.asarray(y)))
    return out


def test_image_folder_stream_matches_in_memory_batches(fmnist, folder):
    images, labels = fmnist
    order = np.argsort(labels, kind="stable")  # the folder's record order, class by class
    source = ImageFolderSource(folder)
    assert len(source) == N and source.labels == sorted(labels.tolist())
    config, steps = _config(), 9  # 7 batches per epoch: the run crosses into epoch 1
    want = _in_memory(images[order], labels[order], config, steps)
    got = list(ImageStream(source).iterate(config, steps, 0))
    assert [s for s, _ in got] == list(range(steps))
    for (x, y), (_, b) in zip(want, got, strict=True):
        np.testing.assert_array_equal(np.asarray(prepare_images(b["image"])), x)
        np.testing.assert_array_equal(b["label"], y)
    # the augmentation is on: the stream is not the un-augmented data
    plain = _in_memory(images[order], labels[order], _config(augment=False), 1)[0][0]
    assert not np.array_equal(np.asarray(prepare_images(got[0][1]["image"])), plain)


def test_array_record_stream_matches_in_memory_batches(fmnist, tmp_path):
    images, labels = fmnist
    source = ArrayRecordSource(export_array_record(images, labels, tmp_path / "train.array_record"))
    config = _config(flip=False, seed=1)
    want = _in_memory(images, labels, config, 3)
    for (x, y), (_, b) in zip(want, ImageStream(source).iterate(config, 3, 0), strict=True):
        np.testing.assert_array_equal(np.asarray(prepare_images(b["image"])), x)
        np.testing.assert_array_equal(b["label"], y)


def test_resumed_iterator_gives_the_uninterrupted_batches(folder, tmp_path):
    stream, config = ImageStream(ImageFolderSource(folder)), _config(batch_size=16)
    full = [b["image"] for _, b in stream.iterate(config, 12, 0)]
    cut = stream.iterate(config, 12, 0)
    for _ in range(5):
        next(cut)
    cut.save(tmp_path / "state.json")
    resumed = stream.iterate(config, 12, 5, tmp_path / "state.json")
    assert resumed.first_step == 0  # the saved loader, not a fresh one
    rest = [b["image"] for _, b in resumed]
    assert len(rest) == 7
    for a, b in zip(full[5:], rest, strict=True):
        np.testing.assert_array_equal(a, b)
    fresh = [b["image"] for _, b in stream.iterate(config, 12, 10)]  # no state: from step 10
    for a, b in zip(full[10:], fresh, strict=True):
        np.testing.assert_array_equal(a, b)
    # a state file of another step is refused, not silently replayed
    with pytest.raises(ValueError, match="input stream is at step 5 but the run at 6"):
        next(stream.iterate(config, 12, 6, tmp_path / "state.json"))


@pytest.mark.parametrize("shards", [1, 2, 4])
def test_process_shards_are_the_blocks_of_the_global_batch(shards):
    n, batch, source = 50, 8, [{"encoded": b"", "label": i} for i in range(50)]
    full = _StepBlocks(source, batch, 0, 10, 1)
    part = _StepBlocks(source, batch, 0, 10, shards)
    for step in (0, 5, 7):  # 6 batches per epoch: step 7 is in epoch 1
        want = full.rows(step)
        got = np.concatenate([part.rows(step * shards + p) for p in range(shards)])
        np.testing.assert_array_equal(got, want)
        assert part[step * shards]["step"] == step
    np.testing.assert_array_equal(full.rows(7), data_lib.epoch_permutation(n, 0, 1)[8:16])
    np.testing.assert_array_equal(full[3]["label"], full.rows(3))
    # grain gives process p the sampler indices k P + p: its k-th batch is block p of step k
    sampler = _FromStep(2, 10, shards)
    assert len(sampler) == 8 * shards
    assert sampler[3 * shards + shards - 1].record_key == (2 + 3) * shards + shards - 1
    with pytest.raises(IndexError):
        sampler[8 * shards]


@pytest.mark.parametrize("shape", [(8, 6, 6), (8, 5, 9, 3), (8, 9, 5, 1)])
def test_augment_rows_of_blocks_equal_the_whole_batch(shape):
    x = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    key = jax.random.PRNGKey(4)
    whole = np.asarray(data_lib.augment(key, x, 2, True))
    assert not np.array_equal(whole, x)
    blocks = [augment_rows(key, x[r : r + 4], slice(r, r + 4), 8, 2, True) for r in (0, 4)]
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    np.testing.assert_array_equal(augment_rows(key, x, slice(0, 8), 8, 0, False), x)


def test_bad_inputs_name_the_setting(tmp_path, folder):
    with pytest.raises(ValueError, match="root: no images"):
        ImageFolderSource(tmp_path)
    with pytest.raises(ValueError, match="paths: no ArrayRecord file"):
        ArrayRecordSource(tmp_path / "missing.array_record")
    with pytest.raises(ValueError, match="batch_size: 480 exceeds"):
        ImageStream(ImageFolderSource(folder)).loader(_config(batch_size=480), 4)
    with pytest.raises(ValueError, match="worker_count -1"):
        ImageStream(ImageFolderSource(folder), worker_count=-1).loader(_config(), 4)
    with pytest.raises(ValueError, match="root: .* is not empty"):
        export_image_folder(np.zeros((1, 2, 2), np.uint8), np.zeros(1, int), folder)


def test_input_states_prune_deletes_only_its_own_stale_states(tmp_path):
    """Pruning removes step states orbax no longer keeps and never a file it did not name."""
    from types import SimpleNamespace

    from mpjax.training.stream import InputStates

    states = InputStates(tmp_path, SimpleNamespace(all_steps=lambda: [4]))
    for name in ("2.process0.json", "4.process0.json", "notes.process0.json"):
        (tmp_path / name).write_text("{}")
    states.prune()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["4.process0.json", "notes.process0.json"]
