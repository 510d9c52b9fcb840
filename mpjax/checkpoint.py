"""Orbax checkpoints: standalone pruned models and resumable training runs.

Two layouts, both written atomically by orbax (into a temporary directory that is renamed
once every file is on disk), both restored against an *abstract target* (a pytree of
``jax.ShapeDtypeStruct``, e.g. from ``jax.eval_shape``) after the stored shapes have been
checked against it:

* :func:`save_params` / :func:`restore_params`: one directory holding ``params/`` (an
  ordinary orbax pytree, readable by any orbax user), ``masks/`` (the kept-weight masks as a
  flat ``{index: bool array}`` dict, their paths in the metadata) and ``meta/`` (JSON: format
  tag, parameter shapes, user metadata). A masks pytree's ``None`` leaves (layers not pruned)
  round-trip: the masks tree is rebuilt with :func:`mpjax.tree.unflatten_like`.
* :class:`TrainCheckpointer`: an ``orbax.checkpoint.CheckpointManager`` saving any training
  state pytree (params, masks, optimizer state, step, RNG key ...) every ``save_every`` steps
  plus a JSON record (data position, config). The state is stored flat, so ``None`` leaves,
  NamedTuples and optax states need no special handling. ``max_to_keep >= 2`` keeps the
  previous good checkpoint until a new one has been committed.

A directory that is not an mpjax checkpoint, or whose files are truncated or emptied, raises
a ``ValueError`` of one line naming the directory and the problem (the first line of the
orbax/TensorStore error, without its spec dump); nothing on disk is modified by a failed
save or restore.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from mpjax.tree import flatten, path_to_str, unflatten_like

PyTree = Any

#: Format tags written into ``meta``; a directory with another tag is "foreign".
PARAMS_FORMAT = "mpjax.params/1"
TRAIN_FORMAT = "mpjax.train/1"
#: What :func:`save_params` writes into its directory (orbax items and orbax's own files).
_SAVED_ENTRIES = frozenset({"params", "meta", "masks", "_CHECKPOINT_METADATA", "commit_success.txt"})


def _shapes(tree: PyTree) -> dict[str, list]:
    """``{path: [shape, dtype]}`` of every array leaf (``None`` leaves skipped)."""
    return {p: [list(np.shape(x)), str(jnp.dtype(x.dtype))] for p, x in flatten(tree).items()}


def check_shapes(stored: Mapping[str, list], target: PyTree, where: str) -> None:
    """Raise ``ValueError`` naming the first parameter whose stored shape differs.

    Args:
      stored: ``{path: [shape, dtype]}`` as written by this module.
      target: the pytree (arrays or ``ShapeDtypeStruct``) the checkpoint is restored into.
      where: the checkpoint directory, for the message.
    """
    want = _shapes(target)
    for path, (shape, _) in want.items():
        if path not in stored:
            raise ValueError(
                f"{where}: parameter {path!r} (shape {tuple(shape)}) is not in the checkpoint; "
                "it was saved from a different model."
            )
        if list(stored[path][0]) != list(shape):
            raise ValueError(
                f"{where}: parameter {path!r} has shape {tuple(stored[path][0])} in the "
                f"checkpoint but {tuple(shape)} in the model; restore into a model built "
                "with the same config."
            )
    extra = [p for p in stored if p not in want]
    if extra:
        raise ValueError(
            f"{where}: the checkpoint has parameter {extra[0]!r} that the model lacks "
            f"({len(extra)} extra); it was saved from a different model."
        )


def _abstract(tree: PyTree) -> PyTree:
    """Abstract leaves with a sharding orbax can restore onto (default device if unset)."""
    default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def one(x):
        sharding = getattr(x, "sharding", None) or default
        return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding)

    return jax.tree.map(one, tree)


def _read_meta(directory: Path, fmt: str) -> dict:
    """The ``meta`` JSON of a checkpoint directory, validated against ``fmt``."""
    if not directory.is_dir():
        raise ValueError(f"{directory}: no checkpoint directory here; check the path.")
    meta_file = directory / "meta" / "metadata"
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(
            f"{directory}: not an mpjax checkpoint (meta/metadata missing or unreadable: {e}); "
            "it is foreign or truncated."
        ) from e
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{directory}: checkpoint format {got!r}, expected {fmt!r} (foreign).")
    return meta


REASON_CHARS = 160  # the longest excerpt of the underlying error a message quotes


def _reason(err: Exception) -> str:
    """The first line of ``err`` without TensorStore's spec dump, at most REASON_CHARS long."""
    lines = str(err).strip().splitlines()
    text = lines[0].split(" [tensorstore_spec=")[0].strip() if lines else ""
    if len(text) > REASON_CHARS:
        text = text[: REASON_CHARS - 3].rstrip() + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _is_straggler(err: BaseException | None) -> bool:
    """A read of a damaged checkpoint that failed after orbax had given up on it."""
    if isinstance(err, RuntimeError) and str(err) == "Event loop is closed":
        return True
    return isinstance(err, ValueError) and "[tensorstore_spec=" in str(err)


class _StragglerFilter(logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" records of such reads."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and _is_straggler(record.exc_info[1]))


def _quiet_stragglers() -> None:
    """Silence the TensorStore reads still in flight when a restore fails.

    Once one read of a damaged checkpoint fails, orbax closes its event loop; the other reads
    then fail to reach it (unraisable "Event loop is closed") or leave failed tasks that
    asyncio logs: dozens to thousands of lines around our one-line error, before and after
    it returns. Installed once per process, before a restore; it drops only those two kinds.
    """
    previous = sys.unraisablehook
    if getattr(previous, "mpjax_straggler_filter", False):
        return

    def hook(unraisable: Any) -> None:
        if not _is_straggler(unraisable.exc_value):
            previous(unraisable)

    hook.mpjax_straggler_filter = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook
    logging.getLogger("asyncio").addFilter(_StragglerFilter())


def _unreadable(directory: Path, err: Exception) -> ValueError:
    """One line naming the directory; orbax/TensorStore errors can run to 1000s of lines."""
    return ValueError(
        f"{directory}: checkpoint is truncated or corrupt ({_reason(err)}); "
        "restore an earlier checkpoint or re-create this one."
    )


def _checkpointer() -> ocp.Checkpointer:
    """An orbax checkpointer of this process alone (process 0 when several are joined)."""
    if jax.process_count() == 1:
        return ocp.Checkpointer(ocp.CompositeCheckpointHandler())
    mp = ocp.options.MultiprocessingOptions(primary_host=0, active_processes={0})
    handler = ocp.CompositeCheckpointHandler(
        composite_options=ocp.CompositeOptions(multiprocessing_options=mp)
    )
    return ocp.Checkpointer(handler, multiprocessing_options=mp)


def save_params(
    directory: str | os.PathLike,
    params: PyTree,
    masks: PyTree | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Save a (pruned) model as a standalone orbax directory, atomically.

    The new checkpoint is written next to ``directory`` and renamed into place only when
    complete; an existing mpjax checkpoint there is replaced only after that succeeded.

    Args:
      directory: target directory (created; an existing mpjax checkpoint is replaced).
      params: parameter pytree (Linen dict).
      masks: masks pytree with ``params``' structure, bool leaves (True = kept) or ``None``.
      meta: JSON-serialisable user metadata (config, accuracy, ...).

    Returns:
      The absolute checkpoint path.

    Raises:
      ValueError: if ``directory`` holds something that is not an mpjax checkpoint, or a
        mask's shape differs from its parameter's.
    """
    directory = Path(directory).absolute()
    if directory.exists() and any(directory.iterdir()):
        _read_meta(directory, PARAMS_FORMAT)  # refuse to overwrite foreign data
        foreign = sorted(p.name for p in directory.iterdir() if p.name not in _SAVED_ENTRIES)
        if foreign:  # the replaced checkpoint is deleted whole: never with files we did not write
            raise ValueError(f"{directory}: holds {foreign}, which mpjax did not write; move them "
                             "away or choose another directory.")
    if jax.process_count() > 1:  # joined processes hold the same model: process 0 saves it
        if jax.process_index() != 0:
            return directory
        params = jax.tree.map(np.asarray, params)  # orbax refuses process-local jax.Arrays
    flat_p = flatten(params)
    flat_m = {} if masks is None else flatten(masks)
    for path, m in flat_m.items():
        if path not in flat_p or np.shape(m) != np.shape(flat_p[path]):
            raise ValueError(
                f"masks: {path!r} has shape {np.shape(m)} but the parameter has "
                f"{np.shape(flat_p.get(path))}; masks must have params' structure."
            )
    record = {
        "format": PARAMS_FORMAT,
        "shapes": _shapes(params),
        "mask_paths": list(flat_m),
        "meta": dict(meta or {}),
    }
    items = {
        "params": ocp.args.StandardSave(params),
        "meta": ocp.args.JsonSave(record),
    }
    if flat_m:
        stored = {f"m{i:05d}": np.asarray(m, bool) for i, m in enumerate(flat_m.values())}
        items["masks"] = ocp.args.StandardSave(stored)
    tmp = directory.with_name(f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}")
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _checkpointer() as ckptr:
            ckptr.save(tmp, args=ocp.args.Composite(**items))
    except BaseException:  # remove this save's debris; the previous checkpoint is untouched
        for debris in directory.parent.glob(f"{tmp.name}*"):
            shutil.rmtree(debris, ignore_errors=True)
        raise
    old = directory.with_name(f".{directory.name}.old-{uuid.uuid4().hex[:8]}")
    if directory.exists():
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def restore_params(
    directory: str | os.PathLike, target: PyTree | None = None
) -> tuple[PyTree, PyTree | None, dict]:
    """Load a directory written by :func:`save_params`.

    Args:
      directory: the checkpoint directory.
      target: optional params pytree (arrays or ``jax.eval_shape`` output); when given,
        every stored shape is checked against it first and the params are restored into
        its structure (and shardings).

    Returns:
      ``(params, masks, meta)``: masks has params' structure with ``None`` for leaves that
      were not masked (``None`` overall when no masks were saved); meta is the user dict.

    Raises:
      ValueError: foreign or truncated directory; a parameter whose shape differs from
        ``target`` (named in the message).
    """
    directory = Path(directory).absolute()
    record = _read_meta(directory, PARAMS_FORMAT)
    if target is not None:
        check_shapes(record["shapes"], target, str(directory))
    items = {"params": ocp.args.StandardRestore(None if target is None else _abstract(target))}
    if record["mask_paths"]:
        items["masks"] = ocp.args.StandardRestore()
    _quiet_stragglers()
    try:
        with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
            out = ckptr.restore(directory, args=ocp.args.Composite(**items))
    except Exception as e:  # orbax/tensorstore raise many types for damaged files
        raise _unreadable(directory, e) from e
    params = out["params"]
    if target is None:
        check_shapes(record["shapes"], params, str(directory))
    masks = None
    if record["mask_paths"]:
        stored = out["masks"]
        by_path = {
            p: jnp.asarray(stored[f"m{i:05d}"], bool) for i, p in enumerate(record["mask_paths"])
        }
        masks = unflatten_like(params, by_path)
    return params, masks, record["meta"]


def _flat_state(state: PyTree) -> tuple[dict[str, Any], list[str]]:
    """``({index: leaf}, [path, ...])``; typed PRNG keys stored as their raw key data."""
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    flat, paths = {}, []
    for i, (p, x) in enumerate(leaves):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        flat[f"s{i:05d}"] = x
        paths.append(path_to_str(p))
    return flat, paths


class TrainCheckpointer:
    """Periodic, atomic checkpoints of a training-state pytree (orbax CheckpointManager).

    Args:
      directory: run directory; one sub-directory per saved step.
      save_every: save when ``step % save_every == 0`` (``force=True`` overrides).
      max_to_keep: how many recent checkpoints to keep (>= 2 so a good one survives).

    Examples:
      >>> import tempfile, jax.numpy as jnp
      >>> ckpt = TrainCheckpointer(tempfile.mkdtemp(), save_every=1)
      >>> ckpt.save(1, {"w": jnp.ones(2)}, {"epoch": 0})
      True
      >>> state, meta = ckpt.restore({"w": jnp.zeros(2)})
      >>> float(state["w"].sum()), meta["epoch"]
      (2.0, 0)
    """

    def __init__(self, directory: str | os.PathLike, save_every: int, max_to_keep: int = 2):
        if save_every < 1 or max_to_keep < 2:
            raise ValueError(
                f"save_every={save_every}, max_to_keep={max_to_keep}: need save_every >= 1 "
                "and max_to_keep >= 2 (the previous good checkpoint must survive)."
            )
        self.directory = Path(directory).absolute()
        self.save_every = int(save_every)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            save_interval_steps=1,  # the interval is checked in save(): orbax always saves a first step
            enable_async_checkpointing=False,
            create=True,
        )
        self._mgr = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """The newest committed step, or ``None`` for an empty directory."""
        return self._mgr.latest_step()

    def all_steps(self) -> list[int]:
        """All committed steps, oldest first."""
        return sorted(self._mgr.all_steps())

    def save(self, step: int, state: PyTree, meta: Mapping[str, Any], force: bool = False) -> bool:
        """Save ``state`` at ``step`` if due (or ``force``); returns whether it saved."""
        if not force and int(step) % self.save_every:
            return False
        flat, paths = _flat_state(state)
        record = {
            "format": TRAIN_FORMAT,
            "step": int(step),
            "paths": paths,
            "shapes": {
                p: [list(np.shape(x)), str(x.dtype)]
                for p, x in zip(paths, flat.values(), strict=True)
            },
            "meta": dict(meta),
        }
        args = ocp.args.Composite(state=ocp.args.StandardSave(flat), meta=ocp.args.JsonSave(record))
        saved = self._mgr.save(int(step), args=args, force=force)
        self._mgr.wait_until_finished()
        return bool(saved)

    def restore(self, target: PyTree, step: int | None = None) -> tuple[PyTree, dict]:
        """Restore into ``target``'s structure (arrays or ``jax.eval_shape`` output).

        Args:
          target: a state pytree like the one saved; only shapes, dtypes and shardings are used.
          step: which step (default the latest).

        Returns:
          ``(state, meta)``.

        Raises:
          ValueError: no checkpoint; foreign or truncated step directory; a leaf whose
            shape differs from ``target`` (named). The files on disk are left untouched.
        """
        step = self.latest_step() if step is None else int(step)
        if step is None:
            raise ValueError(f"{self.directory}: no checkpoint to restore.")
        where = self.directory / str(step)
        record = _read_meta(where, TRAIN_FORMAT)
        leaves, treedef = jax.tree_util.tree_flatten_with_path(target)
        paths = [path_to_str(p) for p, _ in leaves]
        abstract_flat = jax.eval_shape(lambda t: _flat_state(t)[0], target)
        for (_, x), k in zip(leaves, abstract_flat, strict=True):  # keep the target's shardings
            sharding = getattr(x, "sharding", None)
            if sharding is not None and not jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
                abstract_flat[k] = jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
        stored = record.get("shapes", {})
        for path, x in zip(paths, abstract_flat.values(), strict=True):
            if path not in stored:
                raise ValueError(f"{where}: {path!r} is not in the checkpoint (another model?).")
            if list(stored[path][0]) != list(np.shape(x)):
                raise ValueError(
                    f"{where}: parameter {path!r} has shape {tuple(stored[path][0])} in the "
                    f"checkpoint but {tuple(np.shape(x))} in the target."
                )
        if len(paths) != len(record["paths"]):
            raise ValueError(
                f"{where}: checkpoint has {len(record['paths'])} leaves, target {len(paths)}."
            )
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(_abstract(abstract_flat)), meta=ocp.args.JsonRestore()
        )
        _quiet_stragglers()
        try:
            out = self._mgr.restore(step, args=args)
        except Exception as e:  # orbax/tensorstore raise many types for damaged files
            raise _unreadable(where, e) from e
        restored = list(out["state"][k] for k in abstract_flat)
        fixed = [
            jax.random.wrap_key_data(r) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else r
            for r, (_, x) in zip(restored, leaves, strict=True)
        ]
        return jax.tree_util.tree_unflatten(treedef, fixed), record["meta"]

    def close(self) -> None:
        """Wait for pending writes and release the manager."""
        self._mgr.wait_until_finished()
        self._mgr.close()
