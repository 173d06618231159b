"""Orbax checkpoints of a training run: the train state, the input position and the early-stopping record, each
verified when it is read back.

One checkpoint holds three items: "state" (step, params, optimizer state, RNG key; sharded arrays, written by every
host into one directory, so multi-host runs need a shared path such as gs://), "data" (the input iterator's position,
JSON) and "progress" (epochs, early-stopping record, JSON). Saving is atomic (orbax writes a temporary directory and
renames it); once orbax has finished, `checksums.json` in the checkpoint's folder records the sha256 of its every file.

Reading one back verifies it: the checksums (a checkpoint without them was still being written when its run
stopped), orbax's own reading of it, the state's structure, shapes and dtypes, and that every value is finite. A run
resumes from, and `trajsv embed` / `evaluate` load, the newest checkpoint that verifies; every one skipped is logged
with the reason. A run whose checkpoints all predate checksums is verified without them; on an object store (gs://)
none are written, and the other checks remain.

The latest `keep` checkpoints are kept, and the one with the best validation loss as well; the loss is saved with each
checkpoint, so the policy also applies, after a resume, to the checkpoints of the runs before it.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from trajsv_jax import files
from trajsv_jax.errors import UserError
from trajsv_jax.training.steps import count_nonfinite

log = logging.getLogger(__name__)
ITEMS = ("state", "data", "progress")
_count_nonfinite = jax.jit(count_nonfinite)  # one compiled reduction over the whole state, not an op per leaf
CHECKSUM_FILE = "checksums.json"
SET_ASIDE = ".unverified"  # suffix of a checkpoint folder a resumed run moved out of its way


class Unverified(Exception):
    """A checkpoint that cannot be trusted; the message says why. Callers fall back to an older one or say so."""


def manager(directory: str | os.PathLike, keep: int = 2, read_only: bool = False) -> ocp.CheckpointManager:
    """A CheckpointManager keeping the latest `keep` checkpoints plus the one with the lowest "val_loss" metric.

    The folder is created by the first save, so a run that fails before it leaves none behind."""
    policy = ocp.checkpoint_managers.AnyPreservationPolicy(
        [
            ocp.checkpoint_managers.LatestN(keep),
            ocp.checkpoint_managers.BestN(
                get_metric_fn=lambda metrics: -metrics["val_loss"], n=1, keep_checkpoints_without_metrics=False
            ),
        ]
    )
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy,
        best_fn=lambda metrics: metrics["val_loss"],  # makes orbax write the metric beside each checkpoint
        best_mode="min",
        create=False,
        read_only=read_only,
        cleanup_tmp_directories=not read_only,  # the half-written checkpoints of killed runs
    )
    path = str(directory) if "://" in str(directory) else os.path.abspath(directory)  # orbax wants absolute paths
    return ocp.CheckpointManager(epath.Path(path), options=options, item_names=ITEMS)


def _folder(mgr: ocp.CheckpointManager, step: int) -> epath.Path:
    return epath.Path(mgr.directory) / str(step)


def _local(mgr: ocp.CheckpointManager) -> bool:
    return "://" not in str(mgr.directory)


def save(mgr: ocp.CheckpointManager, state: Any, data: dict, progress: dict, val_loss: float | None = None) -> None:
    """Save checkpoint `state.step`, wait for it, and write its checksums; a state with non-finite values is refused
    (the train step never makes one, see `steps.apply_update`; this is the last guard)."""
    step = int(jax.device_get(state.step))
    bad = int(_count_nonfinite(state))
    if bad:
        raise UserError(
            f"{mgr.directory}: the train state at step {step} has {bad:,} non-finite values, so it was not saved. "
            "Train in a new --workdir with a lower --config.optimizer.learning_rate."
        )
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data), progress=ocp.args.JsonSave(progress)
    )
    metrics = {"val_loss": float(val_loss)} if val_loss is not None and math.isfinite(val_loss) else None
    mgr.save(step, args=args, metrics=metrics, force=True)
    mgr.wait_until_finished()
    if jax.process_index() == 0 and _local(mgr):
        folder = Path(_folder(mgr, step))
        names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        files.atomic_json(folder / CHECKSUM_FILE, files.checksums(folder, names))


def _checksummed(mgr: ocp.CheckpointManager) -> bool:
    """Whether checkpoints of this run carry checksums (none do on object stores, or from before they existed)."""
    return _local(mgr) and any((_folder(mgr, step) / CHECKSUM_FILE).exists() for step in mgr.all_steps())


def _verify_files(mgr: ocp.CheckpointManager, step: int) -> None:
    folder = _folder(mgr, step)
    if not (folder / CHECKSUM_FILE).exists():
        raise Unverified(f"no {CHECKSUM_FILE}: it was still being written when its run stopped")
    try:
        expected = files.read_json(folder / CHECKSUM_FILE, "")
        if not isinstance(expected, dict):
            raise UserError(f"{folder / CHECKSUM_FILE}: not a JSON object.")
        files.verify_checksums(folder, expected, str(folder), "")
    except UserError as e:
        raise Unverified(str(e).strip()) from None


def abstract(tree: Any, sharding: Any = None) -> Any:
    """The shapes, dtypes and shardings (`sharding`, else each array's own) a restore of `tree` should give."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding or x.sharding), tree)


def restore(mgr: ocp.CheckpointManager, step: int, like: Any, checksummed: bool) -> tuple[Any, dict, dict]:
    """(state, data position, progress) of checkpoint `step`, verified as the module says; `like` is `abstract(...)`
    of the state. Raises `Unverified`."""
    if checksummed:
        _verify_files(mgr, step)
    args = ocp.args.Composite(
        state=ocp.args.StandardRestore(like), data=ocp.args.JsonRestore(), progress=ocp.args.JsonRestore()
    )
    try:
        restored = mgr.restore(step, args=args)
    except Exception as e:  # orbax and tensorstore raise many kinds on a damaged checkpoint
        first = (str(e).splitlines() or [""])[0][:160]
        raise Unverified(f"unreadable ({type(e).__name__}: {first})") from None
    got, want = jax.tree.leaves(restored.state), jax.tree.leaves(like)
    same = jax.tree.structure(restored.state) == jax.tree.structure(like)
    if not same or [(x.shape, x.dtype) for x in got] != [(x.shape, x.dtype) for x in want]:
        raise Unverified("its state has other shapes or dtypes than this run's model")
    bad = int(_count_nonfinite(restored.state))
    if bad:
        raise Unverified(f"its state has {bad:,} non-finite values")
    if not isinstance(restored.data, dict) or not isinstance(restored.progress, dict):
        raise Unverified("its data position or progress is not a JSON object")
    return restored.state, restored.data, restored.progress


def restore_newest(mgr: ocp.CheckpointManager, like: Any) -> tuple[int, tuple[Any, dict, dict], list[int]]:
    """(step, (state, data, progress), steps skipped) of the newest checkpoint that verifies; each one skipped is
    logged with the reason. UserError if none does."""
    checksummed, reasons = _checksummed(mgr), []
    for step in sorted(mgr.all_steps(), reverse=True):
        try:
            return step, restore(mgr, step, like, checksummed), [s for s, _ in reasons]
        except Unverified as e:
            log.warning("checkpoint %d in %s skipped: %s", step, mgr.directory, e)
            reasons.append((step, str(e)))
    raise UserError(
        f"{mgr.directory}: no checkpoint can be restored ({'; '.join(f'step {s}: {why}' for s, why in reasons)}). "
        f"Delete {mgr.directory} and run the same `trajsv train` again to start over, or train in a new --workdir."
    )


def set_aside(mgr: ocp.CheckpointManager, steps: list[int]) -> None:
    """Rename checkpoints that failed verification to STEP.unverified (kept for inspection, invisible to orbax), so
    that the resumed run can save those steps again."""
    if not steps:
        return
    if jax.process_index() == 0:
        for step in steps:
            target = epath.Path(mgr.directory) / f"{step}{SET_ASIDE}"
            if target.exists():
                target.rmtree()
            _folder(mgr, step).rename(target)
            log.warning("moved checkpoint %d aside to %s; delete it when you no longer need it", step, target)
    multihost_utils.sync_global_devices("trajsv checkpoints set aside")
    mgr.reload()


def load_state(mgr: ocp.CheckpointManager, which: str | int, like: Any, where: str) -> tuple[int, Any]:
    """(step, state) of checkpoint `which`: "latest" (the newest that verifies), "best" (the lowest validation loss
    that newest one records; itself if that one does not verify) or a step number, which must verify."""
    steps = mgr.all_steps()
    if not steps:
        raise UserError(f"{where}: no checkpoints. Train first: `trajsv train --workdir {where}`.")
    if which not in ("latest", "best"):
        if int(which) not in steps:
            raise UserError(f"{where}: no checkpoint at step {which}; it has steps {sorted(steps)}.")
        try:
            return int(which), restore(mgr, int(which), like, _checksummed(mgr))[0]
        except Unverified as e:
            raise UserError(
                f"{where}: checkpoint {which} cannot be used: {e}. Use --checkpoint latest or best, which fall back "
                "to the newest checkpoint that verifies."
            ) from None
    step, (state, _, progress), _ = restore_newest(mgr, like)
    best = progress.get("best_step")
    if which == "latest" or best == step or best not in steps:  # BestN keeps the best one
        return step, state
    try:
        return best, restore(mgr, best, like, _checksummed(mgr))[0]
    except Unverified as e:
        log.warning("best checkpoint %d in %s skipped: %s; using the newest, step %d", best, mgr.directory, e, step)
        return step, state
