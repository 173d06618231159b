"""The TrajSV trainer (paper IV-D): the triple-contrastive step, pure and jitted with explicit shardings.

The input pipeline yields global batches sharded over the mesh's "data" axis. Inside one jitted step the two variants
are made from the global batch (so replacements come from every device's videos), re-tokenized, the three views are
embedded and scored against the whole global batch, and SGD updates the replicated parameters; XLA inserts the
collectives. `training.loop` runs it; this module is its trainer `kind = "trajsv"` (see `training.trainers`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from etils import epath
from jax.sharding import Mesh

from input_pipeline import examples as examples_lib
from input_pipeline import write as write_lib
from trajsv_jax import plots
from trajsv_jax.config import check, is_number
from trajsv_jax.data import tokenize
from trajsv_jax.data.field import SOCCER_LAYOUT, GridLayout
from trajsv_jax.errors import UserError
from trajsv_jax.models import TrajSV, TrajSVConfig
from trajsv_jax.training import checkpoints, losses, sharding, trainers, variants
from trajsv_jax.training.steps import TrainState, apply_update, jit_steps, replicate

Batch = dict[str, jax.Array]
MODEL_INPUTS = ("segment_mask", "clip_mask", "visual", "visual_mask")
REDUCTIONS = ("mean", "sum")  # of the InfoNCE terms over the batch (training/losses.py)
plot_losses = plots.plot_losses


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """What the step needs besides arrays (static under jit)."""

    max_delta: float = 0.2
    grids: GridLayout = SOCCER_LAYOUT  # the vocabulary's field grids
    unknown: int | None = None  # the vocabulary's unknown token
    embedding: str = "tokens"
    visual: bool = True
    alpha: float = 0.5
    beta: float = 0.3
    tau: float = 0.1
    exclude_positive: bool = False
    reduction: str = "mean"

    @classmethod
    def from_config(
        cls, config: ml_collections.ConfigDict, model: TrajSVConfig, vocab: tokenize.Vocabulary
    ) -> StepConfig:
        loss = config.loss
        return cls(
            max_delta=config.variants.max_delta,
            grids=vocab.layout,
            unknown=vocab.unknown_token,
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


def make_setup(config: ml_collections.ConfigDict) -> Setup:
    """Read the dataset's description and vocabulary; resolve the config's automatic (0 / -1) model fields."""
    check_config(config)
    info, example, vocab, fields = trainers.read_dataset(config)
    if fields["visual_dim"] == -1:
        fields["visual_dim"] = example.visual_dim if write_lib.has_visual(info) else 0
    elif fields["visual_dim"] not in (0, example.visual_dim):
        raise UserError(
            f"config model.visual_dim={fields['visual_dim']}: {config.data_dir} has visual features of dim "
            f"{example.visual_dim}. Use -1 (automatic), 0 (trajectory-only) or {example.visual_dim}."
        )
    model = TrajSVConfig(segments=example.segments_per_clip, **fields)
    return Setup(example, model, StepConfig.from_config(config, model, vocab), vocab, config.data_dir)


def check_config(config: ml_collections.ConfigDict) -> None:
    """Refuse, by name, the values of this trainer's own fields that the step could not train with."""
    momentum, loss, delta = config.optimizer.momentum, config.loss, config.variants.max_delta
    name = config.optimizer.get("name", "sgd")
    check(name in OPTIMIZERS, "optimizer.name", name, f"choose one of {', '.join(OPTIMIZERS)}")
    check(is_number(momentum, 0, 1) and momentum < 1, "optimizer.momentum", momentum, "a number in [0, 1)")
    check(is_number(delta, 0, 1), "variants.max_delta", delta, "a share of the clip in [0, 1]")
    check(is_number(loss.tau, 0, above=True), "loss.tau", loss.tau, "a temperature > 0")
    for key in ("alpha", "beta"):
        check(is_number(loss[key], 0), f"loss.{key}", loss[key], "a weight >= 0")
    check(loss.reduction in REDUCTIONS, "loss.reduction", loss.reduction, f"choose one of {', '.join(REDUCTIONS)}")


OPTIMIZERS = ("sgd", "adam", "adamw")


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """SGD with momentum (the paper's: lr 0.01, momentum 0.7), or Adam / AdamW (`optimizer.name`; not the paper's)."""
    opt = config.optimizer
    name = opt.get("name", "sgd")
    if name == "adam":
        return optax.adam(opt.learning_rate)
    if name == "adamw":
        return optax.adamw(opt.learning_rate)
    return optax.sgd(opt.learning_rate, momentum=opt.momentum)


def model_inputs(batch: Batch, step: StepConfig) -> Batch:
    """The fields of a batch the model reads (matrices rasterized on device for the matrices embedding)."""
    fields = [name for name in MODEL_INPUTS if step.visual or not name.startswith("visual")]
    out = {name: batch[name] for name in fields}
    if step.embedding == "tokens":
        out["tokens"] = batch["tokens"]
    else:
        out["matrices"] = variants.segment_matrices(batch, step.grids)
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
        intra["tokens"] = variants.retokenize(intra, *vocab, step.grids, step.unknown)
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
        cells = step.grids.num_cells
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
    """One SGD step on the triple loss of a global batch: views → model (dropout on) → loss → gradients → update
    (kept only if finite: `steps.apply_update`)."""
    rng, view_key, dropout_key = jax.random.split(state.rng, 3)
    views, metrics = make_views(view_key, batch, vocab, step)

    def loss_fn(params):
        v = model.apply({"params": params}, views, deterministic=False, rngs={"dropout": dropout_key})
        terms = step.loss_terms(v.reshape(-1, 3, v.shape[-1]))
        return terms["loss"], terms

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state, update = apply_update(state, grads, loss, tx, rng)
    return state, metrics | terms | update


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


def state_shapes(config: ml_collections.ConfigDict, setup: Setup) -> TrainState:
    """The initial state's shapes and dtypes (`jax.eval_shape`: nothing allocated, nothing compiled)."""
    model, tx = TrajSV(setup.model), make_optimizer(config)
    return jax.eval_shape(functools.partial(init_state, model, tx, setup.example, setup.step, config.seed))


def load_params(workdir: str | os.PathLike, which: str | int = "best") -> tuple[Setup, Any, int]:
    """(setup, params, step) of checkpoint `which` ("best", "latest" or a step) of a TrajSV training run; the
    checkpoint is verified (`checkpoints.load_state`)."""
    workdir = epath.Path(workdir)
    config = trainers.run_config(workdir)
    setup = make_setup(config)
    mgr = checkpoints.manager(workdir / trainers.CHECKPOINT_DIR, read_only=True)
    like = checkpoints.abstract(state_shapes(config, setup), sharding.replicated(sharding.make_mesh()))
    step, state = checkpoints.load_state(mgr, which, like, str(workdir))
    return setup, state.params, step


def load_encoder(workdir: str | os.PathLike, which: str | int = "best") -> trainers.Encoder:
    """The Encoder of a TrajSV training run's checkpoint `which`."""
    setup, params, step = load_params(workdir, which)
    mesh = sharding.make_mesh()
    model = TrajSV(setup.model)
    encode = jax.jit(
        lambda b: model.apply({"params": params}, model_inputs(b, setup.step), method=TrajSV.encode),
        in_shardings=sharding.batch_sharding(mesh),
        out_shardings=sharding.replicated(mesh),
    )
    return trainers.Encoder("trajsv", str(workdir), step, setup.data_dir, setup.example, setup.vocab, mesh, encode)
