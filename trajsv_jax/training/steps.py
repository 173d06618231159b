"""What every trainer's steps share: the train state, the guarded optimizer update, host values replicated over the
mesh, and the jit of a (train_step, eval_step) pair with explicit shardings (state and tables replicated, batch over
"data")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from trajsv_jax.training import sharding


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 []
    params: Any
    opt_state: Any
    rng: jax.Array  # uint32 [2]: the step's variants / noise and dropout are drawn from it, then it moves on


def count_nonfinite(tree: Any) -> jax.Array:
    """How many floating-point values of `tree` are NaN or ±inf: an int32 scalar (jittable; one reduction a leaf)."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return sum((jnp.sum(~jnp.isfinite(x), dtype=jnp.int32) for x in leaves), jnp.zeros((), jnp.int32))


def apply_update(
    state: TrainState, grads: Any, loss: jax.Array, tx: optax.GradientTransformation, rng: jax.Array
) -> tuple[TrainState, dict[str, jax.Array]]:
    """The optimizer step, kept only if the loss, the gradient norm and the new parameters and optimizer state are
    all finite; otherwise params and optimizer state stay as they were (step and RNG still move on, so the data and
    the random draws stay in step). The "finite" metric tells the loop, which stops or counts it (config.nonfinite)
    when it next reads metrics, so the check adds no host sync."""
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & (count_nonfinite((params, opt_state)) == 0)
    params, opt_state = jax.tree.map(
        lambda new, old: jnp.where(finite, new, old), (params, opt_state), (state.params, state.opt_state)
    )
    new = state.replace(step=state.step + 1, params=params, opt_state=opt_state, rng=rng)
    return new, {"grad_norm": grad_norm, "finite": finite}


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
