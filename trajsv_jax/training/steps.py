"""What every trainer's steps share: the train state, host values replicated over the mesh, and the jit of a
(train_step, eval_step) pair with explicit shardings (state and tables replicated, batch over "data")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax
import jax
import numpy as np
from jax.sharding import Mesh

from trajsv_jax.training import sharding


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 []
    params: Any
    opt_state: Any
    rng: jax.Array  # uint32 [2]: the step's variants / noise and dropout are drawn from it, then it moves on


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Host values (the same on every host) → arrays replicated over the mesh."""
    replicated = sharding.replicated(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_callback(np.shape(x), replicated, lambda _: np.asarray(x)), tree)


def jit_steps(train_fn: Callable, eval_fn: Callable, state_sharding: Any, mesh: Mesh) -> tuple[Callable, Callable]:
    """Jit train_fn(state, batch, tables) → (state, metrics) and eval_fn(params, batch, key, tables) → metrics with
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
