"""Learning-free video vectors, evaluated beside a trained run by the same protocol (`evaluate`).

- `grid`: the mean segment matrix of a video (the share of its valid 1 s segments that visit each cell of its field's
  grid, `variants.segment_matrices`), compared by cosine. What trajectories say without any learning: a trained model
  that does not beat it has learned nothing the grid does not already hold.
- `random`: an independent Gaussian vector per video and query (seeded by the protocol's seed, the video id and δ):
  the chance level of a ranking, measured rather than assumed.
Both take the protocol's batches (positions as the queries were made) and return float32 [B, d].
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from trajsv_jax.data import tokenize
from trajsv_jax.training import variants

NAMES = ("grid", "random")
RANDOM_DIM = 16


@functools.partial(jax.jit, static_argnames="grids")
def grid_vectors(batch: dict[str, jax.Array], grids: tokenize.GridLike) -> jax.Array:
    """float32 [B, C]: per video, the share of its valid segments that visit each cell (plus a tiny constant, so
    that a video without any visited cell still has a direction)."""
    matrices = variants.segment_matrices(batch, grids).astype(jnp.float32)  # [B, n, m, C]
    valid = (batch["segment_mask"] & batch["clip_mask"][..., None]).astype(jnp.float32)
    total = (matrices * valid[..., None]).sum((1, 2))
    return total / jnp.maximum(valid.sum((1, 2)), 1.0)[:, None] + 1e-6


def random_vectors(video_ids: np.ndarray, seed: int, stream: int) -> np.ndarray:
    """float32 [B, RANDOM_DIM]: one Gaussian vector per video id, for the protocol's `seed` and a `stream` (0 for the
    database, one per δ for the queries)."""
    return np.stack(
        [np.random.default_rng([seed, stream, int(v)]).standard_normal(RANDOM_DIM) for v in video_ids]
    ).astype(np.float32)
