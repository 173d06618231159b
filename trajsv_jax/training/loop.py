"""The training loop every trainer shares: resume, validation, early stopping, checkpoints, metrics, the loss plot.

`train_and_evaluate(config, workdir)` picks the trainer by `config.kind` (`training.trainers`), so the loop never
imports a specific model. Checkpoints hold the data position, so re-running the same command continues exactly.

Before a run writes anything into its workdir it checks what it can, each failure one line: the config's values, the
dataset, that the parameters, gradients and optimizer state fit in memory, that no other run holds the workdir (a lock
for the whole run), that a resumed run has the same config and dataset and a checkpoint that verifies; and it reads
the first batch and runs the first validation. A non-finite loss or gradient stops the run (config.nonfinite "stop")
or skips that update ("skip"); no checkpoint ever holds a non-finite value (docs/RELIABILITY.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from jax.sharding import Mesh
from tqdm import tqdm

from input_pipeline import examples as examples_lib
from input_pipeline import reader
from trajsv_jax import files
from trajsv_jax.config import check, is_count, is_number
from trajsv_jax.errors import UserError
from trajsv_jax.models import count_params
from trajsv_jax.training import checkpoints, sharding, trainers
from trajsv_jax.training import metrics as metrics_lib
from trajsv_jax.training.steps import replicate

log = logging.getLogger(__name__)
# config fields a resumed run may change (how long and how often); anything else must match the checkpoint's run
RESUMABLE_CHANGES = (
    "num_epochs", "max_steps", "patience", "log_every_steps", "eval_every_steps", "keep_checkpoints", "nonfinite",
)  # fmt: skip
NONFINITE = ("stop", "skip")  # config.nonfinite: what a step with a non-finite loss or gradient does to the run
# shared fields that are counts, with their least value
COUNTS = {
    "batch_size": 1, "eval_batch_size": 1, "num_epochs": 1, "max_steps": 0, "eval_every_steps": 0, "patience": 0,
    "log_every_steps": 1, "keep_checkpoints": 1, "shuffle_buffer": 1, "mesh.data": 0, "mesh.model": 1,
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class TrainSummary:
    """How a run ended (also written as WORKDIR/summary.json)."""

    workdir: str
    kind: str
    steps: int
    epochs: float
    stopped: str
    resumed_from: int | None
    global_batch: int
    devices: int
    processes: int
    params: int
    initial_val_loss: float | None
    best_val_loss: float | None
    best_step: int | None
    final_train_loss: float | None
    seconds: float
    skipped_steps: int = 0  # updates skipped for a non-finite loss or gradient (config.nonfinite = "skip")
    loss_plot: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def report(self) -> str:
        """A few lines on the run: where it stopped, the losses, the throughput, the files."""
        lines = [
            f"trained {self.steps} steps ({self.epochs:.1f} epochs) at global batch {self.global_batch} on "
            f"{self.devices} devices / {self.processes} processes, {self.params:,} params: {self.stopped}"
            + (f" (resumed from step {self.resumed_from})" if self.resumed_from is not None else ""),
        ]
        if self.initial_val_loss is not None:
            lines.append(
                f"  validation loss {self.initial_val_loss:.4f} at step 0 -> best {self.best_val_loss:.4f} at step "
                f"{self.best_step}"
                + (f"; last train loss {self.final_train_loss:.4f}" if self.final_train_loss is not None else "")
            )
        if self.skipped_steps:
            lines.append(f"  {self.skipped_steps} steps skipped: non-finite loss or gradient (config.nonfinite=skip)")
        lines.append(f"  {self.seconds:.0f} s; checkpoints, metrics.jsonl, tensorboard/ in {self.workdir}")
        if self.loss_plot:
            lines.append(f"  loss curve: {self.loss_plot}")
        return "\n".join(lines)


def validation_batch(config: ml_collections.ConfigDict, mesh: Mesh, example: examples_lib.ExampleConfig) -> int:
    """The largest evaluation batch ≤ config.eval_batch_size that the validation split can fill on every host."""
    source = reader.tfrecord_source(config.data_dir, config.val_split, example)
    count = jax.process_count()
    unit = int(np.lcm(count, mesh.shape["data"]))
    batch = min(config.eval_batch_size, reader.smallest_host_share(source, count) * count) // unit * unit
    if batch == 0:
        raise UserError(
            f"{source.where}: {sum(source.shard_lengths)} videos cannot make one evaluation batch over {count} "
            f"processes and {mesh.shape['data']} data devices. Write more validation videos or shards "
            "(`trajsv dataset --val-fraction --shards`), or set --config.patience=0 and --config.val_split='' "
            "to train without validation."
        )
    return batch


def initial_params(config: ml_collections.ConfigDict, state: Any, mesh: Mesh) -> Any:
    """The state with the best parameters of run `config.init_from` (fine-tuning), or unchanged."""
    if not config.get("init_from"):
        return state
    trainer = trainers.get(trainers.kind_of(trainers.run_config(config.init_from)))
    params = trainer.load_params(config.init_from)[1]
    mine, theirs = jax.tree.map(jnp.shape, state.params), jax.tree.map(jnp.shape, params)
    if mine != theirs:
        raise UserError(
            f"--config.init_from={config.init_from}: its parameters have other shapes than this config's model "
            "(another vocabulary or model size). Tokenize with its vocabulary (`trajsv tokenize --vocabulary`) and "
            "keep the model fields."
        )
    return state.replace(params=jax.device_put(params, sharding.replicated(mesh)))


def total_steps(config: ml_collections.ConfigDict, batches_per_epoch: int) -> int:
    steps = config.num_epochs * batches_per_epoch
    return min(steps, config.max_steps) if config.max_steps > 0 else steps


def check_config(config: ml_collections.ConfigDict) -> None:
    """Refuse, by name and before anything is read or compiled, bad values of the fields every trainer shares."""
    for key, low in COUNTS.items():
        value = config
        for part in key.split("."):
            value = value[part]
        check(is_count(value, low), key, value, f"an integer >= {low}")
    rate = config.optimizer.learning_rate
    check(is_number(rate, 0, above=True), "optimizer.learning_rate", rate, "a finite number > 0")
    mode = config.get("nonfinite", "stop")
    check(mode in NONFINITE, "nonfinite", mode, f"choose one of {', '.join(NONFINITE)}")


def available_host_memory() -> int | None:
    """Bytes this process can still allocate: the host's available memory, lowered to what an address-space limit
    (`ulimit -v`) leaves; None where neither can be read."""
    try:
        meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        free = int(meminfo["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            return None
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit != resource.RLIM_INFINITY:
        try:
            status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
            free = min(free, limit - int(status["VmSize"].split()[0]) * 1024)
        except (OSError, KeyError, ValueError):
            free = min(free, limit)
    return free


def check_memory(shapes: Any, mesh: Mesh) -> None:
    """UserError if the parameters, their gradients and the optimizer state cannot fit in memory (from `shapes`, the
    trainer's `state_shapes`: nothing allocated or compiled), before a run that could never fit fails late or hangs.
    A lower bound (activations come on top): only a model that is certainly too large is refused."""

    def nbytes(tree: Any) -> int:
        return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))

    need = nbytes(shapes) + nbytes(shapes.params)  # the state (params, optimizer, step, RNG) and the gradients
    device = mesh.local_devices[0]
    stats = device.memory_stats() or {}
    if stats.get("bytes_limit"):
        free, where = stats["bytes_limit"] - stats.get("bytes_in_use", 0), f"{device.platform} device {device.id}"
    else:  # CPU devices share the host's memory, each with its own replica of the state
        free, where = available_host_memory(), "host memory"
        need *= len(mesh.local_devices)
    if free is not None and need > free:
        raise UserError(
            f"config model: {count_params(shapes.params):,} parameters with their gradients and optimizer state need "
            f"{need / 2**30:,.1f} GiB, more than the {free / 2**30:,.1f} GiB of {where} available. Make the model "
            "smaller (--config.model.*), or train on devices with more memory."
        )


def run_record(config: ml_collections.ConfigDict, setup: trainers.Setup) -> dict[str, Any]:
    """What run.json holds: the config, the resolved model fields, the example config and the dataset's identity."""
    record = {
        "config": config.to_dict(),
        "model": dataclasses.asdict(setup.model),
        "example": setup.example.as_dict(),
        "dataset": trainers.dataset_identity(config.data_dir),
    }
    return json.loads(json.dumps(record))  # as it reads back (tuples as lists)


def check_resume(config: ml_collections.ConfigDict, setup: trainers.Setup, workdir: epath.Path) -> None:
    """UserError if the checkpointed run in `workdir` cannot go on with `config`: no run.json, a config that differs
    in anything but `RESUMABLE_CHANGES`, or another dataset (vocabulary, example config, feature shapes)."""
    run_file = workdir / trainers.RUN_FILE
    if not run_file.exists():
        raise UserError(
            f"{run_file}: missing, but {workdir / trainers.CHECKPOINT_DIR} holds checkpoints of a run, which cannot "
            "go on without its config. Restore run.json from a copy, or train in a new --workdir."
        )

    def flat(tree: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in tree.items():
            out |= flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
        return out

    saved, now = trainers.read_run(workdir), run_record(config, setup)
    old, new = flat(trainers.run_config(workdir).to_dict()), flat(now["config"])
    changed = sorted(k for k in {*old, *new} if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k))
    if changed:
        raise UserError(
            f"{workdir}: holds a run with a different config ({', '.join(changed)} changed). "
            "Resume with the same config, or train in a new --workdir."
        )
    names = {"vocabulary": "vocabulary", "example": "example config", "features": "feature shapes"}
    recorded = saved.get("dataset") or {"example": saved.get("example")}  # older runs recorded the example only
    differ = [names[k] for k in names if k in recorded and recorded[k] != now["dataset"][k]]
    differ += [
        f"model.{k} {v} -> {now['model'].get(k)}" for k, v in saved.get("model", {}).items() if now["model"].get(k) != v
    ]
    if differ:
        raise UserError(
            f"{workdir}: was trained on another dataset than {config.data_dir} ({', '.join(differ)}). Resume with "
            "the dataset it was trained on, or train in a new --workdir."
        )


def count_skipped(pending: list[tuple[int, jax.Array]], config: ml_collections.ConfigDict, workdir: epath.Path) -> int:
    """How many of the `pending` steps (step, its "finite" flag) had a non-finite loss or gradient; empties the list.
    Their updates were skipped in the step itself; in "stop" mode the first one ends the run before anything more
    is saved."""
    flags = jax.device_get([flag for _, flag in pending])
    bad = [step for (step, _), ok in zip(pending, flags, strict=True) if not ok]
    pending.clear()
    if bad and config.get("nonfinite", "stop") == "stop":
        raise UserError(
            f"{workdir}: step {bad[0]} has a non-finite loss or gradient (NaN or inf): training diverged; nothing "
            f"after it was saved. Train in a new --workdir with a lower --config.optimizer.learning_rate (now "
            f"{config.optimizer.learning_rate:g}), or resume with --config.nonfinite=skip to skip such steps."
        )
    if bad:
        log.warning("steps %s: non-finite loss or gradient; their updates were skipped", bad)
    return len(bad)


class Evaluator:
    """Validation loss over the whole (batched) validation split, with the same variants every time."""

    def __init__(self, config, setup: trainers.Setup, mesh: Mesh, eval_fn: Callable, tables: Any):
        self.config, self.setup, self.mesh, self.eval_fn, self.tables = config, setup, mesh, eval_fn, tables
        self.batch = validation_batch(config, mesh, setup.example)
        self.rng = replicate(jax.random.PRNGKey(config.seed + 1), mesh)

    def __call__(self, params: Any) -> dict[str, float]:
        batches = reader.make_iterator(
            self.config.data_dir, self.config.val_split, self.batch, self.mesh, 0, self.setup.example,
            shuffle=False, num_epochs=1,
        )  # fmt: skip
        totals: dict[str, float] = {}
        count = 0
        for batch in batches:
            metrics = jax.device_get(self.eval_fn(params, batch, self.rng, self.tables))
            totals = {k: totals.get(k, 0.0) + float(v) for k, v in metrics.items()}
            count += 1
        return {k: v / count for k, v in totals.items()} | {"videos": count * self.batch}


def write_lock(workdir: epath.Path) -> contextlib.AbstractContextManager:
    """The workdir's lock for the whole run, held by process 0 (an object store's workdir has none)."""
    if jax.process_index() != 0 or trainers.is_remote(workdir):
        return contextlib.nullcontext()
    return files.locked(workdir, "train")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> TrainSummary:
    """Train (or resume) a run of trainer `config.kind` in `workdir`: checkpoints, metrics.jsonl, TensorBoard,
    run.json, summary.json and plots/loss.png. One run at a time holds a workdir (UserError naming the other)."""
    t_start = time.perf_counter()
    config = trainers.absolute_paths(config)
    check_config(config)
    trainer = trainers.get(trainers.kind_of(config))
    setup = trainer.make_setup(config)
    mesh = sharding.make_mesh(config.mesh.data or None, config.mesh.model)
    shapes = trainer.state_shapes(config, setup)
    check_memory(shapes, mesh)
    batches = reader.make_iterator(
        config.data_dir, config.train_split, config.batch_size, mesh, config.seed, setup.example,
        shuffle_buffer=config.shuffle_buffer,
    )  # fmt: skip
    workdir = epath.Path(workdir)
    with write_lock(workdir):
        return _run(config, setup, mesh, shapes, batches, workdir, t_start)


def _run(
    config: ml_collections.ConfigDict,
    setup: trainers.Setup,
    mesh: Mesh,
    shapes: Any,
    batches: reader.BatchIterator,
    workdir: epath.Path,
    t_start: float,
) -> TrainSummary:
    """The run, once `train_and_evaluate` has checked its inputs and holds the workdir: resume (from the newest
    checkpoint that verifies), compile, validate, train."""
    mgr = checkpoints.manager(workdir / trainers.CHECKPOINT_DIR, config.keep_checkpoints)
    resumed_from, resumed = None, None
    if mgr.all_steps():
        check_resume(config, setup, workdir)
        like = checkpoints.abstract(shapes, sharding.replicated(mesh))
        resumed_from, resumed, skipped = checkpoints.restore_newest(mgr, like)
        checkpoints.set_aside(mgr, skipped)
        batches.restore(resumed[1])
    stream = itertools.chain([next(batches)], batches)  # read before compiling or writing: bad data fails the start
    kind = trainers.kind_of(config)
    trainer = trainers.get(kind)
    lead = jax.process_index() == 0
    state, train_fn, eval_fn, tables = trainer.start(config, setup, mesh)
    evaluate = Evaluator(config, setup, mesh, eval_fn, tables) if config.val_split else None
    if lead:
        log.info(setup.describe())
        if evaluate is not None:
            log.info("validation: %s split in batches of %d", config.val_split, evaluate.batch)
    progress = {
        "best_val_loss": None, "best_step": None, "evals_since_best": 0, "initial_val_loss": None, "skipped_steps": 0,
    }  # fmt: skip
    if resumed is not None:
        state, _, saved = resumed
        progress |= saved
    else:
        state = initial_params(config, state, mesh)
    initial = None
    if evaluate is not None and progress["initial_val_loss"] is None:
        initial = evaluate(state.params)
        progress |= {"initial_val_loss": initial["loss"], "best_val_loss": initial["loss"], "best_step": 0}
    if lead and resumed is None:
        metrics_lib.replace_text(workdir / trainers.RUN_FILE, json.dumps(run_record(config, setup), indent=1))
    writer = metrics_lib.MetricWriter(workdir, resume_step=resumed_from or 0)
    if initial is not None:
        writer.write(0, "val", initial)

    step, last = int(jax.device_get(state.step)), total_steps(config, batches.batches_per_epoch)
    stop_reason = "done" if step >= last else f"reached step {last}"
    bar = tqdm(total=last, initial=step, unit="step", disable=not lead, dynamic_ncols=True, desc=kind)
    timer = (time.perf_counter(), step)
    train_loss = None
    pending: list[tuple[int, jax.Array]] = []  # (step, "finite" flag) of the steps not checked yet
    try:
        while step < last:
            state, metrics = train_fn(state, next(stream), tables)
            step += 1
            pending.append((step, metrics.pop("finite")))
            at_log = step % config.log_every_steps == 0 or step == last
            at_eval = step % config.eval_every_steps == 0 if config.eval_every_steps else batches.batch == 0
            at_eval = at_eval or step == last
            if at_log or at_eval:  # the loop reads from the device here anyway: check the steps since the last time
                progress["skipped_steps"] += count_skipped(pending, config, workdir)
            if at_log:
                metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                now = time.perf_counter()
                metrics["videos_per_s"] = (step - timer[1]) * config.batch_size / (now - timer[0])
                metrics["skipped_steps"] = progress["skipped_steps"]
                timer, train_loss = (now, step), metrics["loss"]
                writer.write(step, "train", metrics)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}", videos_s=f"{metrics['videos_per_s']:.1f}")
            bar.update(1)
            if not at_eval:
                continue
            val_loss = None
            if evaluate is not None:
                val = evaluate(state.params)
                val_loss = val["loss"]
                writer.write(step, "val", val)
                if val_loss < progress["best_val_loss"]:
                    progress |= {"best_val_loss": val_loss, "best_step": step, "evals_since_best": 0}
                else:
                    progress["evals_since_best"] += 1
                shown = {"loss": f"{train_loss:.4f}"} if train_loss is not None else {}  # none logged yet
                bar.set_postfix(**shown, val=f"{val_loss:.4f}", best=f"{progress['best_val_loss']:.4f}")
            checkpoints.save(mgr, state, batches.state(), progress, val_loss)
            if config.patience and progress["evals_since_best"] >= config.patience:
                stop_reason = f"early stop: no better validation loss in {config.patience} evaluations"
                break
            timer = (time.perf_counter(), step)  # evaluation and checkpointing are not training throughput
    finally:
        bar.close()
        writer.close()
    summary = TrainSummary(
        workdir=str(workdir),
        kind=kind,
        steps=step,
        epochs=step / batches.batches_per_epoch,
        stopped=stop_reason,
        resumed_from=resumed_from,
        global_batch=config.batch_size,
        devices=mesh.size,
        processes=jax.process_count(),
        params=count_params(state.params),
        initial_val_loss=progress["initial_val_loss"],
        best_val_loss=progress["best_val_loss"],
        best_step=progress["best_step"],
        final_train_loss=train_loss,
        seconds=time.perf_counter() - t_start,
        skipped_steps=progress["skipped_steps"],
    )
    if lead:
        metrics_lib.replace_text(workdir / "summary.json", json.dumps(summary.as_dict(), indent=1))
        png = trainer.plot_losses(metrics_lib.read_metrics(workdir), workdir / "plots" / "loss.png")
        summary = dataclasses.replace(summary, loss_plot=png)
    return summary
