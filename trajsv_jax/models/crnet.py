"""CRNet (paper IV-B): a trajectory-enhanced Transformer that turns a clip's m segments into a vector t [d].

Layer for layer as the PyTorch peer: segment embedding (token embedding with id 0 = padding, or a linear layer over
the binary segment matrix) + learned positional embedding, dropout, a post-norm Transformer encoder
(torch.nn.TransformerEncoderLayer: ReLU FFN, dropout on attention weights and both residual branches), a mean over
the valid segments and a position-wise FFN (d -> d -> d). Fusion with the visual vector y happens in `TrajSV`.
`CRNet` and its `EncoderLayer`s take the whole `TrajSVConfig`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from trajsv_jax.models.attention import LN_EPS, keep_first_key_open, torch_dense
from trajsv_jax.models.config import TrajSVConfig
from trajsv_jax.models.dropout import Dropout
from trajsv_jax.models.pooling import masked_mean


def embed_segments(segments: jax.Array, embedding: str, vocab_size: int, d_model: int, dtype: Any) -> jax.Array:
    """Segment embeddings s_i [N, m, d] from token ids or segment matrices; call it inside a compact method, where it
    declares the caller's submodule "embed" (shared by CRNet and the LSTM baselines)."""
    if embedding == "tokens":
        table = nn.Embed(
            vocab_size,
            d_model,
            dtype=dtype,
            param_dtype=jnp.float32,
            embedding_init=nn.initializers.normal(1.0),
            name="embed",
        )
        return table(segments) * (segments != 0)[..., None].astype(dtype)
    if embedding == "matrices":
        return torch_dense(d_model, segments.shape[-1], dtype, name="embed")(segments.astype(dtype))
    raise ValueError(f"unknown embedding {embedding!r}: expected 'tokens' or 'matrices'")


class EncoderLayer(nn.Module):
    """Post-norm Transformer encoder layer, as torch.nn.TransformerEncoderLayer(norm_first=False, relu): d_model,
    heads, ffn hidden units, dropout_attn on the attention weights and both residual branches."""

    config: TrajSVConfig

    @nn.compact
    def __call__(self, x: jax.Array, key_mask: jax.Array, deterministic: bool) -> jax.Array:
        """x [N, m, d], key_mask [N, m] (True = attend; at least one True per row) -> [N, m, d]."""
        cfg = self.config
        d, ffn, rate, dtype = cfg.d_model, cfg.ffn, cfg.dropout_attn, jnp.dtype(cfg.dtype)
        attn = nn.MultiHeadDotProductAttention(
            num_heads=cfg.heads,
            qkv_features=d,
            out_features=d,
            dropout_rate=rate,
            broadcast_dropout=False,
            dtype=dtype,
            param_dtype=jnp.float32,
            # torch's in_proj: xavier_uniform over the stacked [3d, d] weight, i.e. U(+-sqrt(6 / 4d)); zero biases.
            kernel_init=nn.initializers.variance_scaling(0.5, "fan_in", "uniform"),
            out_kernel_init=nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
            name="self_attn",
        )
        h = attn(x, mask=key_mask[:, None, None, :], deterministic=deterministic)
        norm = {"epsilon": LN_EPS, "dtype": dtype, "param_dtype": jnp.float32}
        x = nn.LayerNorm(**norm, name="norm1")(x + Dropout(rate)(h, deterministic))
        h = jax.nn.relu(torch_dense(ffn, d, dtype, name="linear1")(x))
        h = torch_dense(d, ffn, dtype, name="linear2")(Dropout(rate)(h, deterministic))
        return nn.LayerNorm(**norm, name="norm2")(x + Dropout(rate)(h, deterministic))


class CRNet(nn.Module):
    """Clip representation network: segments of N clips -> trajectory vectors t [N, d_model].

    `embedding="tokens"` embeds token ids [N, m] (0 = padding/empty, embedded as zeros like torch's padding_idx);
    `embedding="matrices"` embeds binary segment matrices [N, m, C] with a linear layer (C = grid cells). Reads
    vocab_size, segments (positional embeddings), d_model, layers, dropout_pos, the `EncoderLayer` fields and dtype.
    """

    config: TrajSVConfig

    @nn.compact
    def __call__(self, segments: jax.Array, segment_mask: jax.Array, deterministic: bool = True) -> jax.Array:
        """segments [N, m] int or [N, m, C] bool, segment_mask [N, m] bool -> t [N, d_model].

        A clip without any valid segment keeps its first segment open in attention and pools over max(count, 1)
        segments, so it yields a finite (if meaningless) vector instead of NaN.
        """
        cfg = self.config
        d, dtype = cfg.d_model, jnp.dtype(cfg.dtype)
        m = segment_mask.shape[-1]
        pos = self.param("pos", nn.initializers.normal(0.02), (cfg.segments, d), jnp.float32)
        x = embed_segments(segments, cfg.embedding, cfg.vocab_size, d, dtype)
        x = x + pos[:m].astype(dtype)
        x = Dropout(cfg.dropout_pos)(x, deterministic)
        open_keys = keep_first_key_open(segment_mask)
        for i in range(cfg.layers):
            x = EncoderLayer(cfg, name=f"layer{i}")(x, open_keys, deterministic)
        h = jax.nn.relu(torch_dense(d, d, dtype, name="ffn0")(masked_mean(x, segment_mask)))
        return torch_dense(d, d, dtype, name="ffn1")(h)
