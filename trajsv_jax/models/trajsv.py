"""TrajSV: CRNet per clip, fusion with the frozen visual vector, VRNet per video, L2-normalised video vector.

Takes the batch dict the input pipeline yields:

  tokens        int32 [B, n, m]     token ids, 0 = padding/empty       (embedding="tokens")
  matrices      bool  [B, n, m, C]  binary segment matrices            (embedding="matrices")
  segment_mask  bool  [B, n, m]     valid segments
  clip_mask     bool  [B, n]        valid clips
  visual        float [B, n, D]     frozen visual vectors y            (unused when visual_dim = 0)
  visual_mask   bool  [B, n]        clips that have a visual vector; y = 0 elsewhere

and returns v [B, out_dim] (unit norm); `encode` also returns the clip vectors c [B, n, d_model + visual_dim].
The whole `TrajSVConfig` (config.py) goes to every submodule; its `clip_encoder` / `video_encoder` swap CRNet / VRNet
for the ablation baselines of paper Table V (with video_encoder="mean", v is [B, d_model + visual_dim]).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from trajsv_jax.models.baselines import LSTMEncoder, MLPPool
from trajsv_jax.models.config import TrajSVConfig
from trajsv_jax.models.crnet import CRNet
from trajsv_jax.models.pooling import l2_normalize, masked_mean
from trajsv_jax.models.vrnet import VRNet

Batch = dict[str, jax.Array]


class TrajSV(nn.Module):
    """The TrajSV model; dropout (when `deterministic=False`) draws from the "dropout" rng stream."""

    config: TrajSVConfig = TrajSVConfig()

    def setup(self) -> None:
        cfg = self.config
        if cfg.clip_encoder == "transformer":
            self.crnet = CRNet(cfg)
        elif cfg.clip_encoder != "none":
            self.lstm = LSTMEncoder(cfg)
        if cfg.video_encoder == "vrnet":
            self.vrnet = VRNet(cfg)
        elif cfg.video_encoder == "mlp":
            self.mlp = MLPPool(cfg)

    def clips(self, batch: Batch, deterministic: bool = True) -> jax.Array:
        """Clip vectors c = [t, y]: [B, n, d_model + visual_dim], in the compute dtype (c = y when visual-only)."""
        if self.config.clip_encoder == "none":
            return jnp.where(batch["visual_mask"][..., None], batch["visual"], 0).astype(self.config.dtype)
        segments = batch["tokens"] if self.config.embedding == "tokens" else batch["matrices"]
        segment_mask = batch["segment_mask"]
        b, n, m = segment_mask.shape
        flat = segments.reshape(b * n, m, *segments.shape[3:])
        encoder = self.crnet if self.config.clip_encoder == "transformer" else self.lstm
        t = encoder(flat, segment_mask.reshape(b * n, m), deterministic).reshape(b, n, -1)
        if self.config.visual_dim == 0:
            return t
        y = jnp.where(batch["visual_mask"][..., None], batch["visual"], 0).astype(t.dtype)
        return jnp.concatenate([t, y], axis=-1)

    def video(self, c: jax.Array, clip_mask: jax.Array) -> jax.Array:
        """Video vectors before normalisation, [B, out_dim] (or [B, d_model + visual_dim] for the mean)."""
        if self.config.video_encoder == "vrnet":
            return self.vrnet(c, clip_mask)
        if self.config.video_encoder == "mlp":
            return self.mlp(c, clip_mask)
        return masked_mean(c, clip_mask)

    def encode(self, batch: Batch, deterministic: bool = True) -> dict[str, jax.Array]:
        """{"video": v [B, out_dim] unit-norm float32, "clips": c [B, n, d_model + visual_dim]}.

        A video without any valid clip gets v = 0 from the "mean" video encoder (finite, not unit-norm).
        """
        c = self.clips(batch, deterministic)
        v = self.video(c, batch["clip_mask"]).astype(jnp.float32)
        return {"video": l2_normalize(v), "clips": c}

    def __call__(self, batch: Batch, deterministic: bool = True) -> jax.Array:
        """Video vectors v [B, out_dim], L2-normalised, float32."""
        return self.encode(batch, deterministic)["video"]


def count_params(params: Any) -> int:
    """Number of scalars in a parameter pytree."""
    return sum(x.size for x in jax.tree_util.tree_leaves(params))
