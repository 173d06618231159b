"""Trainers chosen by name: `config.kind` ("trajsv", "play2vec") → the module that trains that model.

A trainer module exposes the contract below (`Trainer`); the loop, embedding and retrieval reach a trainer only
through `get(kind)`, so trainers never import each other and the generic code imports none of them (as big_vision
picks its trainer by name). What every trainer reads the same way also lives here: the run's files, the dataset's
description and vocabulary, and the `Encoder` a trained run becomes for retrieval.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import jax
import ml_collections
import numpy as np
from etils import epath
from jax.sharding import Mesh

from input_pipeline import examples as examples_lib
from input_pipeline import write as write_lib
from trajsv_jax.data import store as store_lib
from trajsv_jax.data import tokenize
from trajsv_jax.errors import UserError
from trajsv_jax.training import sharding

TRAINERS = {"trajsv": "trajsv_jax.training.trajsv", "play2vec": "trajsv_jax.training.play2vec"}
RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoints"
PATH_FIELDS = ("data_dir", "init_from")  # config fields naming folders: run.json records them absolute
Batch = dict[str, jax.Array]


class Setup(Protocol):
    """What a run derives from its config and its dataset (each trainer has its own dataclass)."""

    example: examples_lib.ExampleConfig
    vocab: tokenize.Vocabulary
    data_dir: str

    def describe(self) -> str: ...


@dataclasses.dataclass(frozen=True)
class Encoder:
    """A trained run as retrieval and evaluation see it: what it was trained on, and batch → vectors.

    `encode` takes a global batch with the dataset's fields (tokens consistent with `vocab`), sharded over
    `mesh`'s data axis, and returns {"video": float32 [B, d] unit-norm, "clips": [B, n, d_clip]}, replicated.
    """

    kind: str  # a key of TRAINERS
    workdir: str
    step: int  # checkpoint step
    data_dir: str  # the dataset it was trained on
    example: examples_lib.ExampleConfig
    vocab: tokenize.Vocabulary
    mesh: Mesh
    encode: Callable[[Batch], dict[str, jax.Array]]

    def batch_size(self, requested: int) -> int:
        """`requested` rounded up to a multiple of the data devices, so every device gets the same rows."""
        return math.ceil(requested / self.mesh.shape["data"]) * self.mesh.shape["data"]

    def vectors(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`encode` of a host batch of `batch_size(...)` rows, back on the host."""
        return jax.device_get(self.encode(jax.device_put(batch, sharding.batch_sharding(self.mesh))))


class Trainer(Protocol):
    """The functions a trainer module defines."""

    def make_setup(self, config: ml_collections.ConfigDict) -> Setup:
        """Read the dataset's description and vocabulary; resolve the config's automatic fields."""

    def state_shapes(self, config: ml_collections.ConfigDict, setup: Setup) -> Any:
        """The initial train state's shapes and dtypes (`jax.eval_shape`: nothing allocated, nothing compiled)."""

    def start(self, config: ml_collections.ConfigDict, setup: Setup, mesh: Mesh) -> tuple[Any, Callable, Callable, Any]:
        """(initial state, jitted train_step(state, batch, tables), jitted eval_step(params, batch, key, tables),
        replicated tables)."""

    def plot_losses(self, records: list[dict], path: epath.Path) -> str:
        """The run's curves as a PNG at `path`; returns the path."""

    def load_params(self, workdir: str | os.PathLike, which: str | int = "best") -> tuple[Setup, Any, int]:
        """(setup, params, step) of checkpoint `which` ("best", "latest" or a step) of a run of this kind."""

    def load_encoder(self, workdir: str | os.PathLike, which: str | int = "best") -> Encoder:
        """The run's `Encoder` at checkpoint `which`."""


def get(kind: str) -> Trainer:
    """The trainer module of `config.kind`."""
    if kind not in TRAINERS:
        raise UserError(f"config kind={kind!r}: no such trainer; choose one of {', '.join(TRAINERS)}.")
    return importlib.import_module(TRAINERS[kind])


def kind_of(config: ml_collections.ConfigDict) -> str:
    return config.get("kind", "trajsv")


def is_remote(path: str | os.PathLike) -> bool:
    return "://" in str(path)


def absolute_paths(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of `config` whose local `PATH_FIELDS` are absolute, so the run opens them from any directory."""
    config = config.copy_and_resolve_references()
    for key in PATH_FIELDS:
        if config.get(key) and not is_remote(config[key]):
            config[key] = os.path.abspath(config[key])
    return config


def resolve_path(path: str, workdir: str | os.PathLike) -> str:
    """A folder run.json records, as it opens from here: absolute and remote ones as they are; a relative one (older
    runs recorded the path as given) from the current directory, else from the run directory's parents."""
    if not path or is_remote(path) or os.path.isabs(path):
        return path
    parents = [] if is_remote(workdir) else Path(os.path.abspath(workdir)).parents
    for base in (Path.cwd(), *parents):
        if (base / path).exists():
            return str(base / path)
    return os.path.abspath(path)


def read_run(workdir: str | os.PathLike) -> dict[str, Any]:
    """A run's run.json: its config, resolved model fields, example config and dataset identity."""
    path = epath.Path(workdir) / RUN_FILE
    fix = "Restore it from a copy, or train again in a new --workdir (`trajsv train --workdir NEW`)."
    try:
        run = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(
            f"{workdir}: not a training run (no {RUN_FILE}). Train with `trajsv train --workdir {workdir}`."
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: unreadable ({e}). {fix}") from None
    if not isinstance(run, dict) or not isinstance(run.get("config"), dict):
        raise UserError(f"{path}: holds no run config. {fix}")
    return run


def run_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
    """The config a training run was started with (its run.json), its folders as they open from here."""
    config = ml_collections.ConfigDict(read_run(workdir)["config"])
    for key in PATH_FIELDS:
        if config.get(key):
            config[key] = resolve_path(config[key], workdir)
    if not is_remote(config.data_dir) and not os.path.isdir(config.data_dir):
        raise UserError(
            f"{epath.Path(workdir) / RUN_FILE}: the dataset it was trained on, {config.data_dir}, is not there. "
            f"Re-write it with `trajsv dataset STORE --out {config.data_dir}`, or run from where training started."
        )
    return config


def load_encoder(workdir: str | os.PathLike, which: str | int = "best") -> Encoder:
    """The Encoder of any training run, by its config's kind."""
    return get(kind_of(run_config(workdir))).load_encoder(workdir, which)


def read_dataset(
    config: ml_collections.ConfigDict,
) -> tuple[dict, examples_lib.ExampleConfig, tokenize.Vocabulary, dict]:
    """(dataset info, example config, vocabulary, model fields with vocab_size 0 resolved) of config.data_dir."""
    info = write_lib.read_info(config.data_dir)
    example = examples_lib.ExampleConfig(**info["config"])
    vocab = tokenize.Vocabulary.load(_vocab_path(config.data_dir))  # a local path or a bucket
    fields = dict(config.model)
    if fields["vocab_size"] == 0:
        fields["vocab_size"] = vocab.vocab_size
    elif fields["vocab_size"] < vocab.vocab_size:
        raise UserError(
            f"config model.vocab_size={fields['vocab_size']}: the vocabulary of {config.data_dir} has "
            f"{vocab.num_tokens} tokens (+ padding and unknown). Set it to 0 (automatic) or at least "
            f"{vocab.vocab_size}."
        )
    return info, example, vocab, fields


def _vocab_path(data_dir: str | os.PathLike) -> epath.Path:
    path = epath.Path(data_dir) / store_lib.VOCAB_FILE
    if not path.exists():
        raise UserError(f"{path}: missing. Re-write the dataset with `trajsv dataset`, which copies it there.")
    return path


def dataset_identity(data_dir: str | os.PathLike) -> dict[str, Any]:
    """What makes a dataset the one a run was trained on: its vocabulary's sha256, its example config and feature
    shapes (dataset_info.json). run.json records it; a resume compares it."""
    info = write_lib.read_info(data_dir)
    vocabulary = hashlib.sha256(_vocab_path(data_dir).read_bytes()).hexdigest()
    return {"vocabulary": vocabulary, "example": info["config"], "features": info["features"]}
