"""Dropout whose random bits come from a keyed integer hash of the element index instead of threefry.

Same semantics as `flax.linen.Dropout` (keep each element with probability 1 − rate, scale kept ones by
1 / (1 − rate)), same "dropout" rng stream, but the mask is `hash(index, key) ≥ rate · 2³²`: a few integer
multiplies and shifts per element that XLA fuses into the consumer, where threefry needs dozens of rounds. The mask
depends only on the key and the element's position in the global array, so it is the same however the batch is
sharded.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


def _mix(x: jax.Array) -> jax.Array:
    """lowbias32 (C. Wellons' hash-prospector): a well-mixed bijection of uint32."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def keep_mask(key: jax.Array, shape: tuple[int, ...], rate: float) -> jax.Array:
    """bool `shape`: True with probability 1 − rate (to 2⁻³²), independently per element for a given key."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    words = key.reshape(-1).astype(jnp.uint32)
    index = jnp.arange(math.prod(shape), dtype=jnp.uint32).reshape(shape)
    bits = _mix(_mix(index ^ words[0]) + words[-1])
    return bits >= jnp.uint32(min(round(rate * 2**32), 2**32 - 1))


class Dropout(nn.Module):
    """Drop-in for `nn.Dropout(rate)(x, deterministic)` with hashed random bits (see the module docstring)."""

    rate: float

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        if deterministic or self.rate == 0.0:
            return x
        keep = keep_mask(self.make_rng("dropout"), x.shape, self.rate)
        return jnp.where(keep, x / (1.0 - self.rate), 0).astype(x.dtype)
