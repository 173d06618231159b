"""The play2vec model (Wang et al., KDD 2019) behind TrajSV's "play2vec(Mean)" baseline: a token seq2seq per clip.

An LSTM encoder reads a clip's (noisy) segment tokens; an LSTM decoder started from the encoder's final state
reconstructs the clean tokens with teacher forcing. The encoder's final hidden state on the clean clip is the clip
vector; the video vector is the mean over the valid clips, L2-normalised. Trained by `training.play2vec`.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from trajsv_jax.models.pooling import l2_normalize, masked_mean

Batch = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Play2VecConfig:
    """Model dims; `Play2VecConfig(**config.model)` once vocab_size is resolved (`make_setup`)."""

    vocab_size: int  # tokens 0 .. vocab_size - 1 (0 = padding / empty segment); vocab_size is the decoder's start
    embed_dim: int = 128
    hidden: int = 128


class Play2Vec(nn.Module):
    """Token embedding, LSTM encoder (final state = clip vector), LSTM decoder with teacher forcing."""

    config: Play2VecConfig

    def setup(self) -> None:
        cfg = self.config
        self.embed = nn.Embed(cfg.vocab_size + 1, cfg.embed_dim)  # + the decoder's start symbol
        self.encoder = nn.RNN(nn.OptimizedLSTMCell(cfg.hidden), return_carry=True)
        self.decoder = nn.RNN(nn.OptimizedLSTMCell(cfg.hidden))
        self.logits = nn.Dense(cfg.vocab_size)

    def _encode(self, tokens: jax.Array, segment_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """LSTM carry (c, h), each [B * n, hidden], after the valid segments (valid-then-padding) of each clip."""
        m = tokens.shape[-1]
        lengths = segment_mask.reshape(-1, m).sum(-1)
        carry, _ = self.encoder(self.embed(tokens.reshape(-1, m)), seq_lengths=lengths)
        return carry

    def encode(self, batch: Batch) -> dict[str, jax.Array]:
        """{"video": [B, hidden] unit-norm float32 (0 without valid clips), "clips": [B, n, hidden]} of clean tokens."""
        b, n, _ = batch["segment_mask"].shape
        clips = self._encode(batch["tokens"], batch["segment_mask"])[1].reshape(b, n, -1)
        return {"video": l2_normalize(masked_mean(clips, batch["clip_mask"])), "clips": clips}

    def __call__(self, noisy: jax.Array, tokens: jax.Array, segment_mask: jax.Array) -> jax.Array:
        """Logits [B, n, m, vocab_size] of the clean `tokens`, decoded from the encoding of the `noisy` ones."""
        m = tokens.shape[-1]
        carry = self._encode(noisy, segment_mask)
        target = tokens.reshape(-1, m)
        start = jnp.full((target.shape[0], 1), self.config.vocab_size, target.dtype)
        outputs = self.decoder(self.embed(jnp.concatenate([start, target[:, :-1]], 1)), initial_carry=carry)
        return self.logits(outputs).reshape(*tokens.shape, -1)
