"""The play2vec trainer (`kind = "play2vec"`, configs/play2vec.py): TrajSV's "play2vec(Mean)" baseline, a denoising
token seq2seq per clip (the model: `models.play2vec`).

A clip is its sequence of segment tokens (play2vec's tokenizer: `trajsv_jax.data.tokenize`). Noise is applied to the
trajectories on device: every position is shifted by N(0, shift²) metres and every sample (frame) dropped with
probability `drop`, then the segments are re-tokenized with the dataset's vocabulary (`variants.retokenize`). An LSTM
encoder reads the noisy tokens of a clip; an LSTM decoder started from the encoder's final state reconstructs the
CLEAN tokens with teacher forcing (cross-entropy over the vocabulary, masked to valid segments whose token occurs in
the training split: `known_tokens`). The encoder's final hidden state on the clean clip is the clip vector; the video
vector is the mean over the valid clips, L2-normalised.

Unlike play2vec, token embeddings are learned end to end with the autoencoder (no separate skip-gram pre-training).
It runs in the shared loop (`training.loop`: checkpoints, exact resume, metrics, early stopping on the val split,
run.json, summary.json) through the trainer contract of `training.trainers`.
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
from input_pipeline import reader
from trajsv_jax import plots
from trajsv_jax.config import check, is_count, is_number
from trajsv_jax.data import tokenize
from trajsv_jax.data.field import SOCCER_LAYOUT, GridLayout
from trajsv_jax.errors import UserError
from trajsv_jax.models import dropout
from trajsv_jax.models.play2vec import Play2Vec, Play2VecConfig
from trajsv_jax.training import checkpoints, sharding, trainers, variants
from trajsv_jax.training.steps import TrainState, apply_update, jit_steps, replicate

Batch = dict[str, jax.Array]
# (vocabulary segments bool [E, C], their tokens int32 [E], tokens of the training split bool [vocab_size])
Tables = tuple[jax.Array, jax.Array, jax.Array]


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """What the jitted steps need besides arrays; hashable, so compiled steps are cached on it (`compile_steps`)."""

    shift: float = 3.0  # σ of the Gaussian shift of every position, metres
    drop: float = 0.2  # probability that a sample (frame) is dropped
    grids: GridLayout = SOCCER_LAYOUT  # the vocabulary's field grids
    unknown: int | None = None  # the vocabulary's unknown token
    learning_rate: float = 1e-3
    clip_norm: float = 5.0

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, vocab: tokenize.Vocabulary) -> StepConfig:
        noise, opt = config.noise, config.optimizer
        return cls(noise.shift, noise.drop, vocab.layout, vocab.unknown_token, opt.learning_rate, opt.clip_norm)

    def optimizer(self) -> optax.GradientTransformation:
        """Adam with the gradient clipped to a global norm (the usual guard for RNN seq2seq)."""
        return optax.chain(optax.clip_by_global_norm(self.clip_norm), optax.adam(self.learning_rate))


@dataclasses.dataclass(frozen=True)
class Setup:
    """What a run derives from its config and its dataset (the fields `training.loop.Evaluator` reads included)."""

    example: examples_lib.ExampleConfig
    model: Play2VecConfig
    step: StepConfig
    vocab: tokenize.Vocabulary
    data_dir: str

    def describe(self) -> str:
        m, s = self.model, self.step
        return (
            f"model: play2vec LSTM seq2seq, vocabulary {m.vocab_size}, embedding {m.embed_dim}, hidden {m.hidden}; "
            f"noise: shift σ {s.shift:g} m, drop {s.drop:g} of samples; data: {self.example.describe()}"
        )


def make_setup(config: ml_collections.ConfigDict) -> Setup:
    """Read the dataset's description and vocabulary as the TrajSV trainer does; resolve vocab_size 0."""
    if config.get("kind") != "play2vec":
        raise UserError(f"config kind={config.get('kind')!r}: play2vec trains configs/play2vec.py (kind 'play2vec').")
    check_config(config)
    _, example, vocab, fields = trainers.read_dataset(config)
    step = StepConfig.from_config(config, vocab)
    return Setup(example, Play2VecConfig(**fields), step, vocab, config.data_dir)


def check_config(config: ml_collections.ConfigDict) -> None:
    """Refuse, by name, the values of this trainer's own fields that the step could not train with."""
    for key in ("embed_dim", "hidden"):
        check(is_count(config.model[key]), f"model.{key}", config.model[key], "a positive integer")
    noise, clip_norm = config.noise, config.optimizer.clip_norm
    check(is_number(noise.shift, 0), "noise.shift", noise.shift, "a distance >= 0 in metres")
    check(is_number(noise.drop, 0, 1) and noise.drop < 1, "noise.drop", noise.drop, "a probability in [0, 1)")
    check(is_number(clip_norm, 0, above=True), "optimizer.clip_norm", clip_norm, "a gradient norm > 0")


def add_noise(rng: jax.Array, batch: Batch, shift: float, drop: float) -> Batch:
    """The batch with every position shifted by N(0, shift²) metres and each sample dropped (NaN) w.p. `drop`.

    The drop mask uses the hashed bits of `models.dropout` (jax.random.bernoulli took ~14 s to compile on CPU here).
    """
    shift_key, drop_key = jax.random.split(rng)
    pos = batch["positions"] + shift * jax.random.normal(shift_key, batch["positions"].shape)
    keep = dropout.keep_mask(drop_key, batch["sample_mask"].shape, drop)
    return {**batch, "positions": jnp.where(keep[..., None, None], pos, jnp.nan)}


def noisy_tokens(rng: jax.Array, batch: Batch, tables: Tables, step: StepConfig) -> tuple[jax.Array, jax.Array]:
    """Tokens [B, n, m] of the noisy play, and the share of valid segments whose token the noise changed."""
    noisy = variants.retokenize(add_noise(rng, batch, step.shift, step.drop), *tables[:2], step.grids, step.unknown)
    valid = batch["segment_mask"] & batch["clip_mask"][..., None]
    return noisy, ((noisy != batch["tokens"]) & valid).sum() / jnp.maximum(valid.sum(), 1)


def reconstruction(logits: jax.Array, batch: Batch, known: jax.Array) -> dict[str, jax.Array]:
    """Cross-entropy and accuracy of the clean tokens over the valid segments whose token is `known` (see
    `known_tokens`), and the share of valid segments that counted."""
    valid = batch["segment_mask"] & batch["clip_mask"][..., None]
    counted = (valid & known[batch["tokens"]]).astype(jnp.float32)
    count = jnp.maximum(counted.sum(), 1.0)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["tokens"])
    correct = logits.argmax(-1) == batch["tokens"]
    return {
        "loss": (ce * counted).sum() / count,
        "accuracy": (correct * counted).sum() / count,
        "known": counted.sum() / jnp.maximum(valid.sum(), 1),
    }


def init_state(key: jax.Array, *, model: Play2Vec, step: StepConfig, example: examples_lib.ExampleConfig) -> TrainState:
    """Parameters from `key`, optimizer state, step 0 and the training RNG."""
    params_key, rng = jax.random.split(key)
    shape = (1, example.clips_per_video, example.segments_per_clip)
    tokens = jnp.zeros(shape, jnp.int32)
    params = model.init(params_key, tokens, tokens, jnp.ones(shape, bool))["params"]
    return TrainState(jnp.zeros((), jnp.int32), params, step.optimizer().init(params), rng)


def train_step(
    state: TrainState, batch: Batch, tables: Tables, *, model: Play2Vec, step: StepConfig
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One Adam step on the reconstruction loss of a global batch, with fresh noise (kept only if finite:
    `steps.apply_update`)."""
    rng, noise_key = jax.random.split(state.rng)
    noisy, changed = noisy_tokens(noise_key, batch, tables, step)

    def loss_fn(params):
        logits = model.apply({"params": params}, noisy, batch["tokens"], batch["segment_mask"])
        terms = reconstruction(logits, batch, tables[2])
        return terms["loss"], terms

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state, update = apply_update(state, grads, loss, step.optimizer(), rng)
    return state, terms | update | {"noise_tokens_changed": changed}


def eval_step(
    params: Any, batch: Batch, rng: jax.Array, tables: Tables, *, model: Play2Vec, step: StepConfig
) -> dict[str, jax.Array]:
    """Reconstruction loss with the noise of `rng` (the same every evaluation, so losses compare)."""
    noisy, changed = noisy_tokens(rng, batch, tables, step)
    logits = model.apply({"params": params}, noisy, batch["tokens"], batch["segment_mask"])
    return reconstruction(logits, batch, tables[2]) | {"noise_tokens_changed": changed}


@functools.lru_cache(maxsize=8)
def compile_steps(
    model: Play2Vec, step: StepConfig, example: examples_lib.ExampleConfig, mesh: Mesh
) -> tuple[Callable, Callable, Callable]:
    """(init_state, train_step, eval_step) jitted with explicit shardings: state, key and tables replicated,
    batch over "data"; train_step donates the state. Cached: a resumed or repeated run in one process compiles once."""
    replicated = sharding.replicated(mesh)
    init = functools.partial(init_state, model=model, step=step, example=example)
    state_sharding = jax.tree.map(lambda _: replicated, jax.eval_shape(init, jax.random.PRNGKey(0)))
    train_fn, eval_fn = jit_steps(
        functools.partial(train_step, model=model, step=step),
        functools.partial(eval_step, model=model, step=step),
        state_sharding,
        mesh,
    )
    return jax.jit(init, in_shardings=replicated, out_shardings=state_sharding), train_fn, eval_fn


def known_tokens(config: ml_collections.ConfigDict, setup: Setup) -> np.ndarray:
    """bool [vocab_size]: the tokens of the training split's valid segments (one pass over it).

    Only these are ever reconstruction targets in training. A token id first seen outside it can only lose
    probability as training goes on (on the bundled match 87% of the validation segments have such tokens, and the
    loss over all of them rises from the first step), so the loss counts the known tokens only, in training and
    validation alike; the "known" metric is the share of valid segments that counted.
    """
    known = np.zeros(setup.model.vocab_size, bool)
    source = reader.tfrecord_source(config.data_dir, config.train_split, setup.example)
    for batch in reader.ordered_batches(source, setup.example, config.batch_size):
        known[batch["tokens"][batch["segment_mask"] & batch["clip_mask"][..., None]]] = True
    return known


def start(config: ml_collections.ConfigDict, setup: Setup, mesh: Mesh) -> tuple[TrainState, Callable, Callable, Tables]:
    """The initial state from config.seed, the jitted (train_step, eval_step), the replicated `Tables`."""
    init_fn, train_fn, eval_fn = compile_steps(Play2Vec(setup.model), setup.step, setup.example, mesh)
    state = init_fn(replicate(jax.random.PRNGKey(config.seed), mesh))
    vocab = tuple(np.asarray(x) for x in setup.vocab.device_arrays())
    tables = replicate((*vocab, known_tokens(config, setup)), mesh)
    return state, train_fn, eval_fn, tables


def plot_losses(records: list[dict], path: epath.Path) -> str:
    """Reconstruction loss (train, validation) and token accuracy / share of tokens the noise changed."""
    plt = plots.plt  # pyplot on the Agg backend trajsv_jax.plots chose
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for kind, style in (("train", "-"), ("val", "o-")):
        rows = [r for r in records if r["kind"] == kind]
        steps = [r["step"] for r in rows]
        axes[0].plot(steps, [r["loss"] for r in rows], style, ms=3, lw=1, label=kind)
        axes[1].plot(steps, [r["accuracy"] for r in rows], style, ms=3, lw=1, label=f"{kind} accuracy")
        axes[1].plot(steps, [r["noise_tokens_changed"] for r in rows], style, ms=3, lw=1, label=f"{kind} noised")
    axes[0].set(xlabel="step", ylabel="cross-entropy", title="play2vec reconstruction loss")
    axes[1].set(
        xlabel="step", ylabel="share of segments", title="clean tokens recovered (known) / changed by noise (valid)"
    )
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return str(path)


def state_shapes(config: ml_collections.ConfigDict, setup: Setup) -> TrainState:
    """The initial state's shapes and dtypes (`jax.eval_shape`: nothing allocated, nothing compiled)."""
    init = functools.partial(init_state, model=Play2Vec(setup.model), step=setup.step, example=setup.example)
    return jax.eval_shape(init, jax.random.PRNGKey(config.seed))


def load_params(workdir: str | os.PathLike, which: str | int = "best") -> tuple[Setup, Any, int]:
    """(setup, params, step) of checkpoint `which` ("best", "latest" or a step) of a play2vec run; the checkpoint is
    verified (`checkpoints.load_state`)."""
    workdir = epath.Path(workdir)
    config = trainers.run_config(workdir)
    setup = make_setup(config)
    mgr = checkpoints.manager(workdir / trainers.CHECKPOINT_DIR, read_only=True)
    like = checkpoints.abstract(state_shapes(config, setup), sharding.replicated(sharding.make_mesh()))
    step, state = checkpoints.load_state(mgr, which, like, str(workdir))
    return setup, state.params, step


def load_encoder(workdir: str | os.PathLike, which: str | int = "best") -> trainers.Encoder:
    """The Encoder (kind "play2vec") of checkpoint `which` ("best", "latest" or a step) of a play2vec run."""
    setup, params, step = load_params(workdir, which)
    mesh = sharding.make_mesh()
    model = Play2Vec(setup.model)
    replicated = sharding.replicated(mesh)
    encode = jax.jit(
        lambda p, b: model.apply({"params": p}, b, method=Play2Vec.encode),
        in_shardings=(replicated, sharding.batch_sharding(mesh)),
        out_shardings=replicated,
    )
    encoder = functools.partial(encode, params)
    return trainers.Encoder("play2vec", str(workdir), step, setup.data_dir, setup.example, setup.vocab, mesh, encoder)
