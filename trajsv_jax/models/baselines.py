"""The ablation architectures of paper Table V: (Bi)LSTM layers in place of CRNet, mean pooling or an MLP for VRNet.

  LSTMEncoder   "w/o CRNet (LSTM / BiLSTM)": CRNet's segment embedding and dropout (no positional embedding: the
                recurrence sees the order), `layers` LSTM or BiLSTM layers, t = the final hidden state
  masked_mean   "w/o VRNet (Mean)": v = the mean of the valid clip vectors (`pooling.masked_mean`, as CRNet pools)
  MLPPool       "w/o VRNet (MLP)": v = Dense-ReLU-Dense of that mean

They plug into `TrajSV` through `TrajSVConfig.clip_encoder` / `video_encoder` and take the whole `TrajSVConfig`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from trajsv_jax.models.attention import torch_dense
from trajsv_jax.models.config import TrajSVConfig
from trajsv_jax.models.crnet import embed_segments
from trajsv_jax.models.dropout import Dropout
from trajsv_jax.models.pooling import masked_mean


class LSTMEncoder(nn.Module):
    """Clip encoder of "w/o CRNet (LSTM / BiLSTM)": segments [N, m] or [N, m, C] + segment_mask [N, m] -> t [N, d].

    A BiLSTM when `config.clip_encoder == "bilstm"`, else an LSTM; also reads vocab_size, d_model, layers,
    dropout_pos, embedding and dtype. Valid segments come first (the input pipeline left-aligns them), so each clip is
    a sequence of `segment_mask.sum()` steps and padded segments never reach t. A BiLSTM runs d // 2 units per
    direction and t joins the forward state at the last valid segment with the backward state at the first. A clip
    without any valid segment gives t = 0. The cell state stays float32 when the compute dtype is bfloat16.
    """

    config: TrajSVConfig

    def rnn(self, features: int, **kwargs: Any) -> nn.RNN:
        """An LSTM scanned over the segments that also returns its final carry (c, h). The cell is made unbound
        (parent=None) so that the RNN adopts it: parameters nest as layer{i}/[forward_rnn/]cell."""
        dtype = jnp.dtype(self.config.dtype)
        cell = nn.OptimizedLSTMCell(features, dtype=dtype, param_dtype=jnp.float32, parent=None)
        return nn.RNN(cell, return_carry=True, **kwargs)

    @nn.compact
    def __call__(self, segments: jax.Array, segment_mask: jax.Array, deterministic: bool = True) -> jax.Array:
        cfg = self.config
        d, dtype = cfg.d_model, jnp.dtype(cfg.dtype)
        x = embed_segments(segments, cfg.embedding, cfg.vocab_size, d, dtype)
        x = Dropout(cfg.dropout_pos)(x, deterministic)
        lengths = segment_mask.sum(-1)
        for i in range(cfg.layers):
            if cfg.clip_encoder == "bilstm":
                directions = (self.rnn(d // 2, parent=None), self.rnn(d // 2, parent=None))
                layer = nn.Bidirectional(*directions, return_carry=True, name=f"layer{i}")
                ((_, h_forward), (_, h_backward)), x = layer(x, seq_lengths=lengths)
                h = jnp.concatenate([h_forward, h_backward], axis=-1)
            else:
                (_, h), x = self.rnn(d, name=f"layer{i}")(x, seq_lengths=lengths)
        # nn.RNN reads the carry of a length-0 sequence at index -1, i.e. after the padding: replace it by zeros.
        return jnp.where((lengths > 0)[:, None], h, 0).astype(dtype)


class MLPPool(nn.Module):
    """Video encoder of "w/o VRNet (MLP)": clips [B, n, d_in] + clip_mask [B, n] -> v [B, out_dim] (not normalised).

    The mean of the valid clips, then Dense(vrnet_hidden)-ReLU-Dense(out_dim); a video without valid clips pools
    zeros.
    """

    config: TrajSVConfig

    @nn.compact
    def __call__(self, clips: jax.Array, clip_mask: jax.Array) -> jax.Array:
        hidden, d_out, dtype = self.config.vrnet_hidden, self.config.out_dim, jnp.dtype(self.config.dtype)
        h = masked_mean(clips.astype(dtype), clip_mask)
        h = jax.nn.relu(torch_dense(hidden, clips.shape[-1], dtype, name="dense0")(h))
        return torch_dense(d_out, hidden, dtype, name="dense1")(h)
