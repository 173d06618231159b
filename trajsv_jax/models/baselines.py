"""The ablation architectures of paper Table V: (Bi)LSTM layers in place of CRNet, mean pooling or an MLP for VRNet.

  LSTMEncoder   "w/o CRNet (LSTM / BiLSTM)": CRNet's segment embedding and dropout (no positional embedding: the
                recurrence sees the order), `layers` LSTM or BiLSTM layers, t = the final hidden state
  masked_mean   "w/o VRNet (Mean)": v = the mean of the valid clip vectors (`pooling.masked_mean`, as CRNet pools)
  MLPPool       "w/o VRNet (MLP)": v = Dense-ReLU-Dense of that mean

They plug into `TrajSV` through `TrajSVConfig.clip_encoder` / `video_encoder`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from trajsv_jax.models.attention import torch_dense
from trajsv_jax.models.crnet import embed_segments
from trajsv_jax.models.dropout import Dropout
from trajsv_jax.models.pooling import masked_mean


class LSTMEncoder(nn.Module):
    """Clip encoder of "w/o CRNet (LSTM / BiLSTM)": segments [N, m] or [N, m, C] + segment_mask [N, m] -> t [N, d].

    Valid segments come first (the input pipeline left-aligns them), so each clip is a sequence of
    `segment_mask.sum()` steps and padded segments never reach t. A BiLSTM runs d // 2 units per direction and t joins
    the forward state at the last valid segment with the backward state at the first. A clip without any valid
    segment gives t = 0. The cell state stays float32 when the compute dtype is bfloat16.
    """

    vocab_size: int = 4096
    d_model: int = 128
    layers: int = 2
    dropout_pos: float = 0.3
    bidirectional: bool = False
    embedding: str = "tokens"
    dtype: Any = jnp.float32

    def rnn(self, features: int, **kwargs: Any) -> nn.RNN:
        """An LSTM scanned over the segments that also returns its final carry (c, h). The cell is made unbound
        (parent=None) so that the RNN adopts it: parameters nest as layer{i}/[forward_rnn/]cell."""
        cell = nn.OptimizedLSTMCell(features, dtype=self.dtype, param_dtype=jnp.float32, parent=None)
        return nn.RNN(cell, return_carry=True, **kwargs)

    @nn.compact
    def __call__(self, segments: jax.Array, segment_mask: jax.Array, deterministic: bool = True) -> jax.Array:
        x = embed_segments(segments, self.embedding, self.vocab_size, self.d_model, self.dtype)
        x = Dropout(self.dropout_pos)(x, deterministic)
        lengths = segment_mask.sum(-1)
        for i in range(self.layers):
            if self.bidirectional:
                half = self.d_model // 2
                directions = (self.rnn(half, parent=None), self.rnn(half, parent=None))
                layer = nn.Bidirectional(*directions, return_carry=True, name=f"layer{i}")
                ((_, h_forward), (_, h_backward)), x = layer(x, seq_lengths=lengths)
                h = jnp.concatenate([h_forward, h_backward], axis=-1)
            else:
                (_, h), x = self.rnn(self.d_model, name=f"layer{i}")(x, seq_lengths=lengths)
        # nn.RNN reads the carry of a length-0 sequence at index -1, i.e. after the padding: replace it by zeros.
        return jnp.where((lengths > 0)[:, None], h, 0).astype(self.dtype)


class MLPPool(nn.Module):
    """Video encoder of "w/o VRNet (MLP)": clips [B, n, d_in] + clip_mask [B, n] -> v [B, d_out] (not normalised).

    The mean of the valid clips, then Dense(hidden)-ReLU-Dense(d_out); a video without valid clips pools zeros.
    """

    hidden: int = 1280
    d_out: int = 128
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, clips: jax.Array, clip_mask: jax.Array) -> jax.Array:
        h = masked_mean(clips.astype(self.dtype), clip_mask)
        h = jax.nn.relu(torch_dense(self.hidden, clips.shape[-1], self.dtype, name="dense0")(h))
        return torch_dense(self.d_out, self.hidden, self.dtype, name="dense1")(h)
