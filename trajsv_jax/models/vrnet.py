"""VRNet (paper IV-C): an encoder-decoder of attention blocks that turns a video's n clip vectors into one vector v.

  E = MSB(MSB(C))                    encoder, d_in -> hidden -> hidden, padded clips masked as keys
  v = rFF(MSB(MAB(s, E)))            decoder, learned seed s in R^d_out pools E by attention

Layer for layer as the PyTorch peer (seed: xavier uniform; the seed-row MSB needs no mask). Normalisation of v is
left to `TrajSV`. From `TrajSVConfig`: hidden = vrnet_hidden, d_out = out_dim, heads = vrnet_heads, dtype.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from trajsv_jax.models.attention import MAB, MSB, torch_dense
from trajsv_jax.models.config import TrajSVConfig


def seed_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """torch's xavier_uniform on the peer's seed [1, 1, d]: fan_in = fan_out = d, so U(+-sqrt(6 / 2d))."""
    bound = math.sqrt(6 / (2 * shape[-1]))
    return jax.random.uniform(key, shape, dtype, -bound, bound)


class VRNet(nn.Module):
    """Video representation network: clips [B, n, d_in] + clip_mask [B, n] -> v [B, out_dim] (not normalised)."""

    config: TrajSVConfig

    @nn.compact
    def __call__(self, clips: jax.Array, clip_mask: jax.Array) -> jax.Array:
        cfg = self.config
        hidden, d_out, heads, dtype = cfg.vrnet_hidden, cfg.out_dim, cfg.vrnet_heads, jnp.dtype(cfg.dtype)
        e = MSB(hidden, heads, dtype, name="msb1")(clips, clip_mask)
        e = MSB(hidden, heads, dtype, name="msb2")(e, clip_mask)
        seed = self.param("seed", seed_init, (1, d_out), jnp.float32)
        s = jnp.broadcast_to(seed, (clips.shape[0], 1, d_out))
        h = MAB(d_out, heads, dtype, name="pma")(s, e, clip_mask)
        h = MSB(d_out, heads, dtype, name="msb3")(h)
        h = jax.nn.relu(torch_dense(d_out, d_out, dtype, name="rff0")(h))
        return torch_dense(d_out, d_out, dtype, name="rff1")(h)[:, 0]
