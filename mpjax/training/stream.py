"""Streaming input: image folders or ArrayRecord files, decoded and augmented on the fly (grain).

The in-memory path (:func:`mpjax.data.batches` over IDX arrays) holds the whole training
set in memory; this one reads each image when a batch needs it, so data sets of any size
fit. An :class:`ImageStream` is passed to :func:`mpjax.training.train` in place of the
``(images, labels)`` arrays; a grain ``DataLoader`` then

1. draws the records of step ``t`` in the in-memory order: batch ``b = t mod S`` of epoch
   ``e = t div S`` (``S`` batches per epoch) is rows ``[b B, (b + 1) B)`` of the permutation
   :func:`mpjax.data.epoch_permutation` ``(n, seed, e)``;
2. shards by process (grain ``ShardOptions`` from ``jax.process_index() / process_count()``):
   process ``p`` of ``P`` reads rows ``[p B / P, (p + 1) B / P)`` of every batch, the block its
   devices hold (:func:`mpjax.training.mesh.process_rows`);
3. reads a process's rows of a step as one grain record, decodes the PNGs (Pillow) and
   applies the crop + flip augmentation of the in-memory step with the same key
   ``fold_in(PRNGKey(seed), t)`` (:func:`augment_rows`);
4. prefetches whole batches in ``worker_count`` worker processes (0: in the calling thread)
   and ``read_threads`` reader threads.

So a stream over an exported copy of an in-memory data set
(:mod:`~mpjax.training.image_sources`: image folders, ArrayRecord files) gives the same
batches, hence the same run, for any number of processes. The iterator state (grain's
``get_state``) is saved beside every checkpoint (:class:`InputStates`) and restored on
resume (:meth:`ImageStream.iterate`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grain
import jax
import numpy as np
from absl import flags as absl_flags
from grain.python import RecordMetadata

from mpjax import data as data_lib
from mpjax.checkpoint import TrainCheckpointer

__all__ = [
    "ImageStream",
    "InputStates",
    "StreamIterator",
    "augment_rows",
]


class _StepBlocks:
    """A grain data source whose record ``t P + p`` is block ``p`` of the batch of step ``t``.

    Block ``p`` (of ``P``) is rows ``[p B / P, (p + 1) B / P)`` of batch ``b = t mod S`` of
    epoch ``e = t div S``: records ``perm[b B + p B / P + j]`` of ``source``, ``perm`` being
    :func:`mpjax.data.epoch_permutation` ``(n, seed, e)`` (module docstring, 1-2). One record
    per local batch keeps a batch in one grain worker.
    """

    def __init__(self, source, batch: int, seed: int, num_steps: int, shards: int):
        self.source, self.n, self.batch, self.seed = source, len(source), batch, seed
        self.num_steps, self.shards, self.local = num_steps, shards, batch // shards
        self.per_epoch = data_lib.num_batches(self.n, batch)
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.num_steps * self.shards  # grain reads key % len: no key may wrap

    def rows(self, key: int) -> np.ndarray:
        """The record indices of ``source`` in block ``key mod P`` of step ``key div P``."""
        t, p = divmod(int(key), self.shards)
        epoch, b = divmod(t, self.per_epoch)
        cached = self._perm  # one read: grain's reader threads share the cache
        if cached is None or cached[0] != epoch:
            cached = self._perm = (epoch, data_lib.epoch_permutation(self.n, self.seed, epoch))
        start = b * self.batch + p * self.local
        return cached[1][start : start + self.local]

    def __getitem__(self, key: int) -> dict[str, Any]:
        items = [self.source[int(i)] for i in self.rows(key)]
        return {"encoded": [x["encoded"] for x in items], "step": int(key) // self.shards,
                "label": np.asarray([x["label"] for x in items], np.int32)}  # fmt: skip

    def __repr__(self) -> str:
        return (f"_StepBlocks({self.source!r}, batch={self.batch}, seed={self.seed}, "
                f"num_steps={self.num_steps}, shards={self.shards})")  # fmt: skip


class _FromStep:
    """Sampler: grain index ``g`` -> record ``first P + g`` of :class:`_StepBlocks`.

    grain hands process ``p`` the indices ``g = k P + p``: its ``k``-th batch is block ``p``
    of step ``first + k``.
    """

    def __init__(self, first: int, num_steps: int, shards: int):
        self.first, self.num_steps, self.shards = first, num_steps, shards

    def __len__(self) -> int:
        return (self.num_steps - self.first) * self.shards

    def __getitem__(self, g: int) -> RecordMetadata:
        if not 0 <= g < len(self):
            raise IndexError(g)
        return RecordMetadata(index=g, record_key=self.first * self.shards + int(g))

    def __repr__(self) -> str:
        return f"_FromStep(first={self.first}, num_steps={self.num_steps}, shards={self.shards})"


def augment_rows(
    key: jax.Array, images: np.ndarray, rows: slice, total: int, padding: int, flip: bool
) -> np.ndarray:
    """Rows ``rows`` of :func:`mpjax.data.augment` ``(key, batch, padding, flip)`` of a
    ``total``-row batch, computed from those rows alone.

    The random draws (crop offsets in ``[0, 2 padding]``, flips with probability 1/2) are
    made for all ``total`` rows, exactly as the in-memory step draws them, and sliced; the
    crop of the zero-padded image and the flip are then numpy copies, so the result equals
    the in-memory augmentation bit for bit (pixels only move; padding is 0 in both).

    Args:
      key: the step's key, ``fold_in(PRNGKey(seed), t)``.
      images: ``[b, H, W]`` or ``[b, H, W, C]`` with ``b = rows.stop - rows.start``.
      rows: which rows of the global batch ``images`` are.
      total: the global batch size.
      padding: zero padding of the crop (0: no crop).
      flip: random horizontal flips.
    """
    x = np.asarray(images)
    k1, k2 = jax.random.split(key)
    if padding > 0:
        h, w = x.shape[1:3]
        offsets = np.asarray(jax.random.randint(k1, (total, 2), 0, 2 * padding + 1))[rows]
        pad = [(0, 0), (padding, padding), (padding, padding)] + [(0, 0)] * (x.ndim - 3)
        padded = np.pad(x, pad)
        x = np.stack(
            [img[i : i + h, j : j + w] for img, (i, j) in zip(padded, offsets, strict=True)]
        )
    if flip:
        flips = np.asarray(jax.random.bernoulli(k2, 0.5, (total, 1, 1, 1)))[rows]
        x = np.where(flips.reshape((-1,) + (1,) * (x.ndim - 1)), x[:, :, ::-1], x)  # W is axis 2
    return x


class _Decode(grain.transforms.Map):
    """A block's PNG bytes -> uint8 ``[b, H, W]`` (``channels`` 1) or ``[b, H, W, C]``."""

    def __init__(self, channels: int):
        self.mode = {1: "L", 3: "RGB"}[channels]

    def map(self, item: dict[str, Any]) -> dict[str, Any]:
        from PIL import Image

        images = []
        for encoded in item["encoded"]:
            with Image.open(io.BytesIO(encoded)) as img:
                images.append(np.asarray(img.convert(self.mode), np.uint8))
        return {"image": np.stack(images), "label": item["label"], "step": item["step"]}


class _Augment(grain.transforms.Map):
    """A batch of rows ``rows`` of step ``t``: :func:`augment_rows` with ``fold_in(key, t)``."""

    def __init__(self, seed: int, padding: int, flip: bool, rows: slice, total: int):
        self.seed, self.padding, self.flip, self.rows, self.total = seed, padding, flip, rows, total

    def map(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        key = jax.random.fold_in(jax.random.PRNGKey(self.seed), int(batch["step"]))
        image = augment_rows(key, batch["image"], self.rows, self.total, self.padding, self.flip)
        return {**batch, "image": image}


@dataclasses.dataclass
class ImageStream:
    """A streamed training set: what :func:`mpjax.training.train` takes in place of arrays.

    Attributes:
      source: an :class:`~mpjax.training.image_sources.ImageFolderSource` or
        :class:`~mpjax.training.image_sources.ArrayRecordSource` (anything with
        ``len`` and ``[i] -> {"encoded": bytes, "label": int}``).
      channels: 1 (grayscale) or 3 (RGB) decoded channels.
      worker_count: grain worker processes that decode and augment ahead (0: in the
        training process, no prefetch).
      worker_buffer_size: batches each worker prepares ahead.
      read_threads: threads that read batches ahead (in each worker).
    """

    source: Any
    channels: int = 1
    worker_count: int = 0
    worker_buffer_size: int = 2
    read_threads: int = 4

    def __len__(self) -> int:
        return len(self.source)

    def loader(self, config, num_steps: int, first_step: int = 0) -> grain.DataLoader:
        """A grain ``DataLoader`` of this process's rows of steps ``first_step .. num_steps - 1``.

        Args:
          config: a :class:`~mpjax.training.config.DistillConfig` (``batch_size``, ``seed``,
            ``augment``, ``crop_padding``, ``flip``).
          num_steps: length of the run.
          first_step: the step of the first batch.

        Raises:
          ValueError: when the batch does not split over the processes, exceeds the data, or
            ``worker_count`` / ``channels`` are out of range.
        """
        shards, index = jax.process_count(), jax.process_index()
        self._check(config.batch_size, shards)
        if self.worker_count and not absl_flags.FLAGS.is_parsed():
            absl_flags.FLAGS.mark_as_parsed()  # grain's workers read absl flags; we set none
        local = config.batch_size // shards
        blocks = _StepBlocks(self.source, config.batch_size, config.seed, num_steps, shards)
        ops: list = [_Decode(self.channels)]
        if config.augment:
            rows = slice(index * local, (index + 1) * local)
            ops.append(
                _Augment(config.seed, config.crop_padding, config.flip, rows, config.batch_size)
            )
        return grain.DataLoader(
            data_source=blocks, sampler=_FromStep(first_step, num_steps, shards), operations=ops,
            worker_count=self.worker_count, worker_buffer_size=self.worker_buffer_size,
            shard_options=grain.sharding.ShardOptions(index, shards, drop_remainder=True),
            # a record is a whole local batch: read a few of them ahead
            read_options=grain.ReadOptions(num_threads=self.read_threads,
                                           prefetch_buffer_size=max(2, self.read_threads)),
        )  # fmt: skip

    def _check(self, batch_size: int, shards: int) -> None:
        if batch_size % shards:
            raise ValueError(
                f"batch_size: {batch_size} does not split over {shards} processes; pick a "
                f"multiple of {shards}."
            )
        if batch_size > len(self):
            raise ValueError(f"batch_size: {batch_size} exceeds the {len(self)} examples.")
        if self.worker_count < 0 or self.read_threads < 1 or self.channels not in (1, 3):
            raise ValueError(
                f"worker_count {self.worker_count} / read_threads {self.read_threads} / channels "
                f"{self.channels}: need worker_count >= 0, read_threads >= 1, channels 1 or 3."
            )

    def iterate(
        self, config, num_steps: int, start: int, state: Path | None = None
    ) -> StreamIterator:
        """This process's batches from step ``start``, resumed from a saved ``state`` file.

        Args:
          config: the run's settings (see :meth:`loader`).
          num_steps: length of the run.
          start: the first step to yield.
          state: a file written by :meth:`StreamIterator.save` at step ``start``; when it
            is missing, the loader starts at ``start`` afresh (the same batches).
        """
        saved = json.loads(state.read_text()) if state is not None and state.is_file() else None
        first = start if saved is None else int(saved["first_step"])
        iterator = iter(self.loader(config, num_steps, first))
        if saved is not None:
            iterator.set_state(saved["grain"].encode())
        return StreamIterator(iterator, first, start)


class StreamIterator:
    """``(step, {"image", "label"})`` of this process's rows; :meth:`save` writes the state."""

    def __init__(self, iterator, first_step: int, start: int):
        self._it, self.first_step, self.step = iterator, first_step, start

    def __iter__(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        return self

    def __next__(self) -> tuple[int, dict[str, np.ndarray]]:
        batch = next(self._it)
        got = int(batch["step"])
        if got != self.step:
            raise ValueError(
                f"state: the input stream is at step {got} but the run at {self.step}; "
                "delete the workdir's input_state/ files to restart the stream at the run's step."
            )
        self.step += 1
        return got, {"image": batch["image"], "label": batch["label"]}

    def save(self, path: Path) -> None:
        """Write the iterator state (grain's JSON plus the loader's first step) atomically."""
        record = {"first_step": self.first_step, "step": self.step,
                  "grain": self._it.get_state().decode()}  # fmt: skip
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)


class InputStates:
    """The stream's iterator state per checkpointed step: ``input_state/<step>.process<p>.json``.

    Args:
      directory: the run's ``input_state`` folder, beside its ``checkpoints``.
      ckpt: the run's checkpointer (which steps it keeps).
    """

    def __init__(self, directory: Path, ckpt: TrainCheckpointer):
        self.directory, self.ckpt = directory, ckpt

    def path(self, step: int) -> Path:
        """The state file of ``step`` for this process."""
        return self.directory / f"{step}.process{jax.process_index()}.json"

    def save(self, step: int, iterator: StreamIterator | None) -> None:
        """Write ``iterator``'s state as the state of ``step`` (nothing for in-memory data)."""
        if iterator is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            iterator.save(self.path(step))

    def prune(self) -> None:
        """Drop the states of steps whose checkpoints orbax no longer keeps."""
        if not self.directory.is_dir():
            return
        kept = {str(s) for s in self.ckpt.all_steps()}
        for f in self.directory.glob(f"*.process{jax.process_index()}.json"):
            step = f.name.split(".")[0]
            if step.isdigit() and step not in kept:  # only states this class named
                f.unlink(missing_ok=True)
