"""Orbax checkpoints of a training run: the train state, the input position and the early-stopping record.

One checkpoint holds three items: "state" (step, params, optimizer state, RNG key; sharded arrays, written by every
host into one directory, so multi-host runs need a shared path such as gs://), "data" (the input iterator's position,
JSON) and "progress" (epochs, early-stopping record, JSON). Saving is atomic (orbax writes a temporary directory and
renames it), so a run killed at any moment resumes from its last complete checkpoint. The latest `keep` checkpoints
are kept, and the one with the best validation loss as well.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath
from jax.sharding import Mesh

from trajsv_jax.errors import UserError
from trajsv_jax.training import sharding

ITEMS = ("state", "data", "progress")


def manager(directory: str | os.PathLike, keep: int = 2, read_only: bool = False) -> ocp.CheckpointManager:
    """A CheckpointManager keeping the latest `keep` checkpoints plus the one with the lowest "val_loss" metric."""
    policy = ocp.checkpoint_managers.AnyPreservationPolicy(
        [
            ocp.checkpoint_managers.LatestN(keep),
            ocp.checkpoint_managers.BestN(get_metric_fn=lambda metrics: -metrics["val_loss"], n=1),
        ]
    )
    options = ocp.CheckpointManagerOptions(preservation_policy=policy, create=not read_only, read_only=read_only)
    path = str(directory) if "://" in str(directory) else os.path.abspath(directory)  # orbax wants absolute paths
    return ocp.CheckpointManager(epath.Path(path), options=options, item_names=ITEMS)


def save(mgr: ocp.CheckpointManager, state: Any, data: dict, progress: dict, val_loss: float | None = None) -> None:
    """Save checkpoint `state.step` (asynchronously; `mgr.wait_until_finished()` before exiting)."""
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data), progress=ocp.args.JsonSave(progress)
    )
    metrics = None if val_loss is None else {"val_loss": float(val_loss)}
    mgr.save(int(jax.device_get(state.step)), args=args, metrics=metrics, force=True)


def restore(mgr: ocp.CheckpointManager, step: int, like: Any) -> tuple[Any, dict, dict]:
    """(state, data position, progress) of checkpoint `step`; `like` gives the state's structure and shardings."""
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like)
    args = ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore(), progress=ocp.args.JsonRestore()
    )
    restored = mgr.restore(step, args=args)
    return restored.state, restored.data, restored.progress


def restore_state(mgr: ocp.CheckpointManager, step: int, shapes: Any, mesh: Mesh) -> Any:
    """The train state alone of checkpoint `step`, replicated over `mesh`; `shapes` gives its structure."""
    replicated = sharding.replicated(mesh)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), shapes)
    return mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))).state


def choose_step(mgr: ocp.CheckpointManager, which: str | int, where: str) -> int:
    """A checkpoint step: "latest", "best" (lowest validation loss) or a number that exists."""
    steps = mgr.all_steps()
    if not steps:
        raise UserError(f"{where}: no checkpoints. Train first: `trajsv train --workdir {where}`.")
    if which == "latest":
        return mgr.latest_step()
    if which == "best":  # the early-stopping record of the latest checkpoint names it; BestN keeps it
        progress = mgr.restore(mgr.latest_step(), args=ocp.args.Composite(progress=ocp.args.JsonRestore())).progress
        best = progress.get("best_step")
        return best if best in steps else mgr.latest_step()
    if int(which) not in steps:
        raise UserError(f"{where}: no checkpoint at step {which}; it has steps {sorted(steps)}.")
    return int(which)
