"""Triple-contrastive training (paper IV-D): the train state, one pure jitted step with explicit shardings, the loop.

The input pipeline yields global batches sharded over the mesh's "data" axis. Inside one jitted step the two variants
are made from the global batch (so replacements come from every device's videos), re-tokenized, the three views are
embedded and scored against the whole global batch, and SGD updates the replicated parameters; XLA inserts the
collectives. `train` runs the loop: checkpoints with the data position (exact resume), metrics, early stopping.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import os
import time
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from etils import epath
from jax.sharding import Mesh
from tqdm import tqdm

from input_pipeline import examples as examples_lib
from input_pipeline import reader
from input_pipeline import write as write_lib
from trajsv_jax import checkpoints, losses, plots, prepare, sharding, tokenize, variants
from trajsv_jax import metrics as metrics_lib
from trajsv_jax.errors import UserError
from trajsv_jax.models import TrajSV, TrajSVConfig, count_params

Batch = dict[str, jax.Array]
MODEL_INPUTS = ("segment_mask", "clip_mask", "visual", "visual_mask")


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 []
    params: Any
    opt_state: Any
    rng: jax.Array  # uint32 [2]: the step's variants and dropout are drawn from it, then it moves on


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """What the step needs besides arrays (static under jit)."""

    max_delta: float = 0.2
    cell: float = 3.0
    embedding: str = "tokens"
    visual: bool = True
    alpha: float = 0.5
    beta: float = 0.3
    tau: float = 0.1
    exclude_positive: bool = False
    reduction: str = "mean"

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, model: TrajSVConfig, cell: float) -> StepConfig:
        loss = config.loss
        return cls(
            max_delta=config.variants.max_delta,
            cell=cell,
            embedding=model.embedding,
            visual=model.visual_dim > 0,
            alpha=loss.alpha,
            beta=loss.beta,
            tau=loss.tau,
            exclude_positive=loss.exclude_positive,
            reduction=loss.reduction,
        )

    def loss_terms(self, v: jax.Array) -> dict[str, jax.Array]:
        """Triple loss of video vectors [B, 3, d] (original, intra-clip, inter-clip per video)."""
        return losses.triple_loss_terms(
            v[:, 0],
            v[:, 1],
            v[:, 2],
            alpha=self.alpha,
            beta=self.beta,
            tau=self.tau,
            exclude_positive=self.exclude_positive,
            reduction=self.reduction,
        )


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """SGD with momentum (paper: lr 0.01, momentum 0.7)."""
    return optax.sgd(config.optimizer.learning_rate, momentum=config.optimizer.momentum)


def model_inputs(batch: Batch, step: StepConfig) -> Batch:
    """The fields of a batch the model reads (matrices rasterized on device for the matrices embedding)."""
    fields = [name for name in MODEL_INPUTS if step.visual or not name.startswith("visual")]
    out = {name: batch[name] for name in fields}
    if step.embedding == "tokens":
        out["tokens"] = batch["tokens"]
    else:
        out["matrices"] = variants.segment_matrices(batch, step.cell)
    return out


def make_views(rng: jax.Array, batch: Batch, vocab: tuple[jax.Array, jax.Array], step: StepConfig):
    """The three views of every video, [B * 3, ...] in (video, view) order, and view metrics.

    Interleaving by video (stack on axis 1, then merge) keeps each device's rows on that device: no resharding.
    One δ ~ U[0, max_delta] per video drives both variants.
    """
    b = batch["clip_mask"].shape[0]
    delta_key, intra_key, inter_key = jax.random.split(rng, 3)
    delta = variants.sample_delta(delta_key, b, step.max_delta)
    intra = variants.intra_clip(intra_key, batch, delta)
    inter = variants.inter_clip(inter_key, batch, delta)
    metrics = {"delta": delta.mean()}
    if step.embedding == "tokens":
        intra["tokens"] = variants.retokenize(intra, *vocab, step.cell)
        changed = (intra["tokens"] != batch["tokens"]) & batch["segment_mask"]
        metrics["intra_tokens_changed"] = changed.sum() / jnp.maximum(batch["segment_mask"].sum(), 1)
    views = [model_inputs(v, step) for v in (batch, intra, inter)]
    stacked = {
        name: jnp.stack([v[name] for v in views], 1).reshape(b * 3, *views[0][name].shape[1:]) for name in views[0]
    }
    return stacked, metrics


def init_state(
    model: TrajSV, tx: optax.GradientTransformation, example: examples_lib.ExampleConfig, step: StepConfig, seed: int
) -> TrainState:
    """Parameters from `seed` (the same on every host), optimizer state, step 0 and the training RNG."""
    params_key, rng = jax.random.split(jax.random.PRNGKey(seed))
    spec = examples_lib.feature_spec(example)
    dummy = {name: jnp.zeros((1, *shape), dtype) for name, (shape, dtype) in spec.items() if name in MODEL_INPUTS}
    dummy |= {"tokens": jnp.zeros((1, *spec["tokens"][0]), jnp.int32)}
    if step.embedding == "matrices":
        cells = tokenize.num_cells(step.cell)
        dummy["matrices"] = jnp.zeros((1, *spec["tokens"][0], cells), bool)
    params = model.init(params_key, dummy)["params"]
    return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), rng)


def train_step(
    state: TrainState,
    batch: Batch,
    vocab: tuple[jax.Array, jax.Array],
    *,
    model: TrajSV,
    tx: optax.GradientTransformation,
    step: StepConfig,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One SGD step on the triple loss of a global batch: views → model (dropout on) → loss → gradients → update."""
    rng, view_key, dropout_key = jax.random.split(state.rng, 3)
    views, metrics = make_views(view_key, batch, vocab, step)

    def loss_fn(params):
        v = model.apply({"params": params}, views, deterministic=False, rngs={"dropout": dropout_key})
        terms = step.loss_terms(v.reshape(-1, 3, v.shape[-1]))
        return terms["loss"], terms

    (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics |= terms | {"grad_norm": optax.global_norm(grads)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state, rng=rng), metrics


def eval_step(
    params: Any, batch: Batch, rng: jax.Array, vocab: tuple[jax.Array, jax.Array], *, model: TrajSV, step: StepConfig
) -> dict[str, jax.Array]:
    """The triple loss without dropout; the caller passes the same `rng` every evaluation, so the variants (and
    hence the validation loss) are comparable across evaluations."""
    views, metrics = make_views(rng, batch, vocab, step)
    v = model.apply({"params": params}, views, deterministic=True)
    return metrics | step.loss_terms(v.reshape(-1, 3, v.shape[-1]))


def compile_steps(
    model: TrajSV, tx: optax.GradientTransformation, step: StepConfig, mesh: Mesh, state: TrainState
) -> tuple[Callable, Callable]:
    """(train_step, eval_step) jitted with explicit shardings: state and vocabulary replicated, batch over "data".

    The state argument of train_step is donated: its buffers are reused for the new state.
    """
    state_sharding = jax.tree.map(lambda _: sharding.replicated(mesh), state)
    return jit_steps(
        functools.partial(train_step, model=model, tx=tx, step=step),
        functools.partial(eval_step, model=model, step=step),
        state_sharding,
        mesh,
    )


def jit_steps(train_fn: Callable, eval_fn: Callable, state_sharding: Any, mesh: Mesh) -> tuple[Callable, Callable]:
    """Jit train_fn(state, batch, tables) → (state, metrics) and eval_fn(params, batch, tables, key) → metrics with
    explicit shardings: state, tables and key replicated, batch over "data"; the state is donated."""
    replicated, data = sharding.replicated(mesh), sharding.batch_sharding(mesh)
    train = jax.jit(
        train_fn,
        in_shardings=(state_sharding, data, replicated),
        out_shardings=(state_sharding, replicated),
        donate_argnums=0,
    )
    evaluate = jax.jit(
        eval_fn, in_shardings=(state_sharding.params, data, replicated, replicated), out_shardings=replicated
    )
    return train, evaluate


def start(
    config: ml_collections.ConfigDict, setup: Setup, mesh: Mesh
) -> tuple[TrainState, Callable, Callable, tuple[jax.Array, jax.Array]]:
    """The initial state (replicated), the jitted (train_step, eval_step) and the replicated vocabulary arrays."""
    model, tx = TrajSV(setup.model), make_optimizer(config)
    state = jax.jit(
        functools.partial(init_state, model, tx, setup.example, setup.step, config.seed),
        out_shardings=sharding.replicated(mesh),
    )()
    train_fn, eval_fn = compile_steps(model, tx, setup.step, mesh, state)
    vocab = replicate(tuple(np.asarray(x) for x in setup.vocab.device_arrays()), mesh)
    return state, train_fn, eval_fn, vocab


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Host values (the same on every host) → arrays replicated over the mesh."""
    replicated = sharding.replicated(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_callback(np.shape(x), replicated, lambda _: np.asarray(x)), tree)


# ------------------------------------------------------------------------------------------------------------ the loop

RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoints"
# config fields a resumed run may change (how long and how often); anything else must match the checkpoint's run
RESUMABLE_CHANGES = ("num_epochs", "max_steps", "patience", "log_every_steps", "eval_every_steps", "keep_checkpoints")


@dataclasses.dataclass(frozen=True)
class Setup:
    """What a run derives from its config and its dataset: shapes, model, vocabulary."""

    example: examples_lib.ExampleConfig
    model: TrajSVConfig
    step: StepConfig
    vocab: tokenize.Vocabulary
    data_dir: str

    def describe(self) -> str:
        m = self.model
        mode = "trajectory-only (no visual features)" if m.visual_dim == 0 else f"visual {m.visual_dim}"
        return (
            f"model: {m.embedding} embedding, vocabulary {m.vocab_size}, d {m.d_model}, {m.layers} layers x "
            f"{m.heads} heads, VRNet {m.vrnet_hidden}, v {m.out_dim}, {mode}, {m.dtype}; "
            f"data: {self.example.describe()}"
        )


def read_dataset(
    config: ml_collections.ConfigDict,
) -> tuple[dict, examples_lib.ExampleConfig, tokenize.Vocabulary, dict]:
    """(dataset info, example config, vocabulary, model fields with vocab_size 0 resolved) of config.data_dir."""
    info = write_lib.read_info(config.data_dir)
    example = examples_lib.ExampleConfig(**info["config"])
    vocab_path = epath.Path(config.data_dir) / prepare.VOCAB_FILE
    if not vocab_path.exists():
        raise UserError(f"{vocab_path}: missing. Re-write the dataset with `trajsv dataset`, which copies it there.")
    vocab = tokenize.Vocabulary.load(io.BytesIO(vocab_path.read_bytes()))  # a local path or a bucket
    fields = dict(config.model)
    if fields["vocab_size"] == 0:
        fields["vocab_size"] = vocab.num_tokens + 1
    elif fields["vocab_size"] <= vocab.num_tokens:
        raise UserError(
            f"config model.vocab_size={fields['vocab_size']}: the vocabulary of {config.data_dir} has "
            f"{vocab.num_tokens} tokens (+1 for padding). Set it to 0 (automatic) or at least {vocab.num_tokens + 1}."
        )
    return info, example, vocab, fields


def make_setup(config: ml_collections.ConfigDict) -> Setup:
    """Read the dataset's description and vocabulary; resolve the config's automatic (0 / -1) model fields."""
    info, example, vocab, fields = read_dataset(config)
    if fields["visual_dim"] == -1:
        fields["visual_dim"] = example.visual_dim if write_lib.has_visual(info) else 0
    elif fields["visual_dim"] not in (0, example.visual_dim):
        raise UserError(
            f"config model.visual_dim={fields['visual_dim']}: {config.data_dir} has visual features of dim "
            f"{example.visual_dim}. Use -1 (automatic), 0 (trajectory-only) or {example.visual_dim}."
        )
    model = TrajSVConfig(segments=example.segments_per_clip, **fields)
    return Setup(example, model, StepConfig.from_config(config, model, vocab.cell), vocab, config.data_dir)


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


def initial_params(config: ml_collections.ConfigDict, state: TrainState, mesh: Mesh) -> TrainState:
    """The state with the best parameters of run `config.init_from` (fine-tuning), or unchanged."""
    if not config.get("init_from"):
        return state
    from trajsv_jax import embed  # embed builds on this module

    params = embed.load_trained(config.init_from)[1]
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

    def __init__(self, config, setup: Setup, mesh: Mesh, eval_fn: Callable, vocab: tuple):
        self.config, self.setup, self.mesh, self.eval_fn, self.vocab = config, setup, mesh, eval_fn, vocab
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
            metrics = jax.device_get(self.eval_fn(params, batch, self.rng, self.vocab))
            totals = {k: totals.get(k, 0.0) + float(v) for k, v in metrics.items()}
            count += 1
        return {k: v / count for k, v in totals.items()} | {"videos": count * self.batch}


def train(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict[str, Any]:
    """Train (or resume) a run in `workdir`: checkpoints, metrics.jsonl, TensorBoard, summary.json, loss plot.

    A config with `kind = "play2vec"` (configs/play2vec.py) trains that baseline instead, with the same outputs.
    """
    if config.get("kind") == "play2vec":
        from trajsv_jax import play2vec

        return run_loop(config, workdir, "play2vec", play2vec.make_setup(config), play2vec.start, play2vec.plot_losses)
    return run_loop(config, workdir, "trajsv", make_setup(config), start, plots.plot_losses)


def run_loop(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    kind: str,
    setup: Any,
    start_fn: Callable,
    plot_fn: Callable,
) -> dict[str, Any]:
    """The training loop every model shares: `start_fn(config, setup, mesh)` gives (state, train_fn, eval_fn,
    tables), `plot_fn(records, path)` draws the curves; resume, validation, early stopping, checkpoints, metrics."""
    t_start = time.perf_counter()
    workdir = epath.Path(workdir)
    lead = jax.process_index() == 0
    mesh = sharding.make_mesh(config.mesh.data or None, config.mesh.model)
    batches = reader.make_iterator(
        config.data_dir, config.train_split, config.batch_size, mesh, config.seed, setup.example,
        shuffle_buffer=config.shuffle_buffer,
    )  # fmt: skip
    state, train_fn, eval_fn, vocab = start_fn(config, setup, mesh)
    evaluate = Evaluator(config, setup, mesh, eval_fn, vocab) if config.val_split else None
    if lead:
        print(setup.describe(), flush=True)
        if evaluate is not None:
            print(f"validation: {config.val_split} split in batches of {evaluate.batch}", flush=True)

    mgr = checkpoints.manager(workdir / CHECKPOINT_DIR, config.keep_checkpoints)
    progress = {"best_val_loss": None, "best_step": None, "evals_since_best": 0, "initial_val_loss": None}
    resumed_from = mgr.latest_step()
    if resumed_from is not None:
        check_resume(config, workdir / RUN_FILE)
        state, data_position, progress = checkpoints.restore(mgr, resumed_from, state)
        batches.restore(data_position)
    else:
        state = initial_params(config, state, mesh)
        if lead:
            workdir.mkdir(parents=True, exist_ok=True)
            run = {"config": json.loads(config.to_json()), "model": dataclasses.asdict(setup.model)}
            (workdir / RUN_FILE).write_text(json.dumps(run | {"example": setup.example.as_dict()}, indent=1))
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
        state, metrics = train_fn(state, next(batches), vocab)
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
    summary = {
        "workdir": str(workdir),
        "kind": kind,
        "steps": step,
        "epochs": step / batches.batches_per_epoch,
        "stopped": stop_reason,
        "resumed_from": resumed_from,
        "global_batch": config.batch_size,
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "params": count_params(state.params),
        **{k: progress[k] for k in ("initial_val_loss", "best_val_loss", "best_step")},
        "final_train_loss": train_loss,
        "seconds": time.perf_counter() - t_start,
    }
    if lead:
        (workdir / "summary.json").write_text(json.dumps(summary, indent=1))
        summary["loss_plot"] = plot_fn(metrics_lib.read_metrics(workdir), workdir / "plots" / "loss.png")
    return summary


def report(summary: dict[str, Any]) -> str:
    """A few lines on a finished run: where it stopped, the losses, the throughput, the files."""
    s = summary
    lines = [
        f"trained {s['steps']} steps ({s['epochs']:.1f} epochs) at global batch {s['global_batch']} on "
        f"{s['devices']} devices / {s['processes']} processes, {s['params']:,} params: {s['stopped']}"
        + (f" (resumed from step {s['resumed_from']})" if s["resumed_from"] is not None else ""),
    ]
    if s["initial_val_loss"] is not None:
        lines.append(
            f"  validation loss {s['initial_val_loss']:.4f} at step 0 -> best {s['best_val_loss']:.4f} at step "
            f"{s['best_step']}"
            + (f"; last train loss {s['final_train_loss']:.4f}" if s["final_train_loss"] is not None else "")
        )
    lines.append(f"  {s['seconds']:.0f} s; checkpoints, metrics.jsonl, tensorboard/ in {s['workdir']}")
    if "loss_plot" in s:
        lines.append(f"  loss curve: {s['loss_plot']}")
    return "\n".join(lines)
