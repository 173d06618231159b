"""Multi-head attention and the MAB/MSB blocks of VRNet as pure functions over explicit parameter pytrees.

The blocks follow the paper (eq. 7-9) and the PyTorch peer layer for layer:

  Q' = Linear(X) -> dim_out,  K, V = Linear(Y) -> dim_out
  H = LayerNorm(Q' + O(MultiHead(Q', K, V))),  MAB(X, Y) = LayerNorm(H + rFF(H)),  rFF = Linear-ReLU-Linear
  MSB(X) = MAB(X, X)

Keeping them pure (`mab(params, x, y, key_mask, heads)`) lets callers vmap/scan/shard them or swap parameters
freely; the Flax modules `MAB` and `MSB` only create the parameters and call the pure functions.

Masking is safe when every key of a row is masked (an all-padded video): such rows keep their first key open, as
the peer does, so the softmax never sees an all -inf row and the output stays finite.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Params = dict[str, Any]

LN_EPS = 1e-5  # torch.nn.LayerNorm's default.


def keep_first_key_open(key_mask: jax.Array) -> jax.Array:
    """Open key 0 of rows [..., k] whose keys are all masked, so masked softmax and pooling stay finite."""
    first = key_mask[..., :1] | ~key_mask.any(-1, keepdims=True)
    return jnp.concatenate([first, key_mask[..., 1:]], axis=-1)


def dense(params: Params, x: jax.Array) -> jax.Array:
    """x @ kernel + bias, computed in x's dtype (parameters are cast, they stay float32 in storage)."""
    return x @ params["kernel"].astype(x.dtype) + params["bias"].astype(x.dtype)


def layer_norm(params: Params, x: jax.Array) -> jax.Array:
    """LayerNorm over the last axis, statistics in float32 for bf16 stability; returns x's dtype."""
    xf = x.astype(jnp.float32)
    mean = xf.mean(-1, keepdims=True)
    var = jnp.square(xf - mean).mean(-1, keepdims=True)
    y = (xf - mean) * jax.lax.rsqrt(var + LN_EPS) * params["scale"] + params["bias"]
    return y.astype(x.dtype)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array | None, heads: int) -> jax.Array:
    """Scaled dot-product attention over `heads` heads: q [B, nq, D], k/v [B, nk, D], key_mask [B, nk] -> [B, nq, D].

    The projections are the caller's; masked keys get no weight, and all-masked rows attend to key 0 only.
    """
    b, nq, d = q.shape
    nk = k.shape[1]
    qh = q.reshape(b, nq, heads, d // heads)
    kh = k.reshape(b, nk, heads, d // heads)
    vh = v.reshape(b, nk, heads, d // heads)
    logits = jnp.einsum("bqhd,bkhd->bhqk", qh, kh).astype(jnp.float32) / math.sqrt(d // heads)
    if key_mask is not None:
        open_keys = keep_first_key_open(key_mask)[:, None, None, :]
        logits = jnp.where(open_keys, logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, vh).reshape(b, nq, d)


def mab(params: Params, x: jax.Array, y: jax.Array, key_mask: jax.Array | None, heads: int) -> jax.Array:
    """Multihead attention block MAB(X, Y): x [B, nq, dq], y [B, nk, dkv], key_mask [B, nk] -> [B, nq, dim_out]."""
    q = dense(params["q"], x)
    out = attention(q, dense(params["k"], y), dense(params["v"], y), key_mask, heads)
    h = layer_norm(params["ln0"], q + dense(params["o"], out))
    rff = dense(params["rff1"], jax.nn.relu(dense(params["rff0"], h)))
    return layer_norm(params["ln1"], h + rff)


def msb(params: Params, x: jax.Array, key_mask: jax.Array | None, heads: int) -> jax.Array:
    """Multihead self-attention block MSB(X) = MAB(X, X)."""
    return mab(params, x, x, key_mask, heads)


def init_dense(key: jax.Array, dim_in: int, dim_out: int) -> Params:
    """torch.nn.Linear's default init: kernel and bias ~ U(-1/sqrt(dim_in), 1/sqrt(dim_in))."""
    bound = 1 / math.sqrt(dim_in)
    kk, kb = jax.random.split(key)
    return {
        "kernel": jax.random.uniform(kk, (dim_in, dim_out), jnp.float32, -bound, bound),
        "bias": jax.random.uniform(kb, (dim_out,), jnp.float32, -bound, bound),
    }


def init_layer_norm(dim: int) -> Params:
    """LayerNorm parameters: scale 1, bias 0."""
    return {"scale": jnp.ones((dim,), jnp.float32), "bias": jnp.zeros((dim,), jnp.float32)}


def torch_dense(features: int, fan_in: int, dtype: Any = jnp.float32, name: str | None = None) -> nn.Dense:
    """A Flax Dense initialised like torch.nn.Linear (see `init_dense`); parameters stay float32."""
    bound = 1 / math.sqrt(fan_in)

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, kernel_init=init, bias_init=init, name=name)


class MAB(nn.Module):
    """Flax wrapper of `mab`: its `params` collection is exactly the pytree `mab` takes (torch-like init)."""

    dim_out: int
    heads: int = 2
    dtype: Any = jnp.float32

    def block_params(self, dim_q: int, dim_kv: int) -> Params:
        """Declare the block's parameters, keyed as `mab` expects."""
        d = self.dim_out

        def norm(name: str) -> Params:
            return self.param(name, lambda _: init_layer_norm(d))

        return {
            "q": self.param("q", init_dense, dim_q, d),
            "k": self.param("k", init_dense, dim_kv, d),
            "v": self.param("v", init_dense, dim_kv, d),
            "o": self.param("o", init_dense, d, d),
            "ln0": norm("ln0"),
            "rff0": self.param("rff0", init_dense, d, d),
            "rff1": self.param("rff1", init_dense, d, d),
            "ln1": norm("ln1"),
        }

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        params = self.block_params(x.shape[-1], y.shape[-1])
        return mab(params, x.astype(self.dtype), y.astype(self.dtype), key_mask, self.heads)


class MSB(MAB):
    """Flax wrapper of `msb`: MAB(X, X)."""

    @nn.compact
    def __call__(self, x: jax.Array, key_mask: jax.Array | None = None) -> jax.Array:
        params = self.block_params(x.shape[-1], x.shape[-1])
        return msb(params, x.astype(self.dtype), key_mask, self.heads)
