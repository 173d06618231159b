"""VRNet (paper IV-C): an encoder-decoder of attention blocks that turns a video's n clip vectors into one vector v.

  E = MSB(MSB(C))                    encoder, d_in -> hidden -> hidden, padded clips masked as keys
  v = rFF(MSB(MAB(s, E)))            decoder, learned seed s in R^d_out pools E by attention

Layer for layer as the PyTorch peer (seed: xavier uniform; the seed-row MSB needs no mask). Normalisation of v is
left to `TrajSV`.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from trajsv_jax.models.attention import MAB, MSB, torch_dense


def seed_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """torch's xavier_uniform on the peer's seed [1, 1, d]: fan_in = fan_out = d, so U(+-sqrt(6 / 2d))."""
    bound = math.sqrt(6 / (2 * shape[-1]))
    return jax.random.uniform(key, shape, dtype, -bound, bound)


class VRNet(nn.Module):
    """Video representation network: clips [B, n, d_in] + clip_mask [B, n] -> v [B, d_out] (not normalised)."""

    hidden: int = 1280
    d_out: int = 128
    heads: int = 2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, clips: jax.Array, clip_mask: jax.Array) -> jax.Array:
        e = MSB(self.hidden, self.heads, self.dtype, name="msb1")(clips, clip_mask)
        e = MSB(self.hidden, self.heads, self.dtype, name="msb2")(e, clip_mask)
        seed = self.param("seed", seed_init, (1, self.d_out), jnp.float32)
        s = jnp.broadcast_to(seed, (clips.shape[0], 1, self.d_out))
        h = MAB(self.d_out, self.heads, self.dtype, name="pma")(s, e, clip_mask)
        h = MSB(self.d_out, self.heads, self.dtype, name="msb3")(h)
        h = jax.nn.relu(torch_dense(self.d_out, self.d_out, self.dtype, name="rff0")(h))
        return torch_dense(self.d_out, self.d_out, self.dtype, name="rff1")(h)[:, 0]
