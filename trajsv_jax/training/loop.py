"""The training loop every trainer shares: resume, validation, early stopping, checkpoints, metrics, the loss plot.

`train_and_evaluate(config, workdir)` picks the trainer by `config.kind` (`training.trainers`), so the loop never
imports a specific model. Checkpoints hold the data position, so re-running the same command continues exactly.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
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
from trajsv_jax.errors import UserError
from trajsv_jax.models import count_params
from trajsv_jax.training import checkpoints, sharding, trainers
from trajsv_jax.training import metrics as metrics_lib
from trajsv_jax.training.steps import replicate

log = logging.getLogger(__name__)
# config fields a resumed run may change (how long and how often); anything else must match the checkpoint's run
RESUMABLE_CHANGES = ("num_epochs", "max_steps", "patience", "log_every_steps", "eval_every_steps", "keep_checkpoints")


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
            f"processes and {mesh.shape['data']} data devices. Write more validation videos (--val-fraction) "
            "or shards, or set --config.patience=0 and --config.val_split='' to train without validation."
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


def check_resume(config: ml_collections.ConfigDict, run_file: epath.Path) -> None:
    """UserError if the config differs from the checkpointed run's in anything but `RESUMABLE_CHANGES`."""

    def flat(tree: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in tree.items():
            out |= flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
        return out

    saved, now = flat(json.loads(run_file.read_text())["config"]), flat(json.loads(config.to_json()))
    changed = sorted(k for k in {*saved, *now} if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k))
    if changed:
        raise UserError(
            f"{run_file.parent}: holds a run with a different config ({', '.join(changed)} changed). "
            "Resume with the same config, or train in a new --workdir."
        )


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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> TrainSummary:
    """Train (or resume) a run of trainer `config.kind` in `workdir`: checkpoints, metrics.jsonl, TensorBoard,
    run.json, summary.json and plots/loss.png."""
    t_start = time.perf_counter()
    kind = trainers.kind_of(config)
    trainer = trainers.get(kind)
    setup = trainer.make_setup(config)
    workdir = epath.Path(workdir)
    lead = jax.process_index() == 0
    mesh = sharding.make_mesh(config.mesh.data or None, config.mesh.model)
    batches = reader.make_iterator(
        config.data_dir, config.train_split, config.batch_size, mesh, config.seed, setup.example,
        shuffle_buffer=config.shuffle_buffer,
    )  # fmt: skip
    state, train_fn, eval_fn, tables = trainer.start(config, setup, mesh)
    evaluate = Evaluator(config, setup, mesh, eval_fn, tables) if config.val_split else None
    if lead:
        log.info(setup.describe())
        if evaluate is not None:
            log.info("validation: %s split in batches of %d", config.val_split, evaluate.batch)

    mgr = checkpoints.manager(workdir / trainers.CHECKPOINT_DIR, config.keep_checkpoints)
    progress = {"best_val_loss": None, "best_step": None, "evals_since_best": 0, "initial_val_loss": None}
    resumed_from = mgr.latest_step()
    if resumed_from is not None:
        check_resume(config, workdir / trainers.RUN_FILE)
        state, data_position, progress = checkpoints.restore(mgr, resumed_from, state)
        batches.restore(data_position)
    else:
        state = initial_params(config, state, mesh)
        if lead:
            workdir.mkdir(parents=True, exist_ok=True)
            run = {"config": json.loads(config.to_json()), "model": dataclasses.asdict(setup.model)}
            (workdir / trainers.RUN_FILE).write_text(json.dumps(run | {"example": setup.example.as_dict()}, indent=1))
    writer = metrics_lib.MetricWriter(workdir, resume_step=resumed_from or 0)
    step, last = int(jax.device_get(state.step)), total_steps(config, batches.batches_per_epoch)
    if evaluate is not None and progress["initial_val_loss"] is None:
        initial = evaluate(state.params)
        progress |= {"initial_val_loss": initial["loss"], "best_val_loss": initial["loss"], "best_step": 0}
        writer.write(0, "val", initial)

    stop_reason = "done" if step >= last else f"reached step {last}"
    bar = tqdm(total=last, initial=step, unit="step", disable=not lead, dynamic_ncols=True, desc=kind)
    timer = (time.perf_counter(), step)
    train_loss = None
    while step < last:
        state, metrics = train_fn(state, next(batches), tables)
        step += 1
        if step % config.log_every_steps == 0 or step == last:
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            now = time.perf_counter()
            metrics["videos_per_s"] = (step - timer[1]) * config.batch_size / (now - timer[0])
            timer, train_loss = (now, step), metrics["loss"]
            writer.write(step, "train", metrics)
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", videos_s=f"{metrics['videos_per_s']:.1f}")
        bar.update(1)
        at_eval = step % config.eval_every_steps == 0 if config.eval_every_steps else batches.batch == 0
        if not (at_eval or step == last):
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
    bar.close()
    mgr.wait_until_finished()
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
    )
    if lead:
        (workdir / "summary.json").write_text(json.dumps(summary.as_dict(), indent=1))
        png = trainer.plot_losses(metrics_lib.read_metrics(workdir), workdir / "plots" / "loss.png")
        summary = dataclasses.replace(summary, loss_plot=png)
    return summary
