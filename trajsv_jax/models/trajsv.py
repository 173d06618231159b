"""TrajSV: CRNet per clip, fusion with the frozen visual vector, VRNet per video, L2-normalised video vector.

Takes the batch dict the input pipeline yields:

  tokens        int32 [B, n, m]     token ids, 0 = padding/empty       (embedding="tokens")
  matrices      bool  [B, n, m, C]  binary segment matrices            (embedding="matrices")
  segment_mask  bool  [B, n, m]     valid segments
  clip_mask     bool  [B, n]        valid clips
  visual        float [B, n, D]     frozen visual vectors y            (unused when visual_dim = 0)
  visual_mask   bool  [B, n]        clips that have a visual vector; y = 0 elsewhere

and returns v [B, out_dim] (unit norm); `encode` also returns the clip vectors c [B, n, d_model + visual_dim].
`TrajSVConfig.clip_encoder` / `video_encoder` swap CRNet / VRNet for the ablation baselines of paper Table V
(with video_encoder="mean", v is [B, d_model + visual_dim]).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from trajsv_jax.errors import UserError
from trajsv_jax.models.baselines import LSTMEncoder, MLPPool
from trajsv_jax.models.crnet import CRNet
from trajsv_jax.models.pooling import l2_normalize, masked_mean
from trajsv_jax.models.vrnet import VRNet

Batch = dict[str, jax.Array]
CLIP_ENCODERS = ("transformer", "lstm", "bilstm", "none")  # CRNet, the "w/o CRNet" baselines, visual-only
VIDEO_ENCODERS = ("vrnet", "mean", "mlp")  # VRNet, or the "w/o VRNet" baselines


@dataclasses.dataclass(frozen=True)
class TrajSVConfig:
    """Model hyperparameters (paper VI-A defaults); `TrajSVConfig(**config_dict)` works with ml_collections.

    visual_dim = 0 is the trajectory-only model (paper Table V, "Trajectory + VRNet"). `dtype` is the compute
    dtype ("bfloat16" on accelerators); parameters are always float32.

    The Table V ablations: `clip_encoder` "lstm" / "bilstm" replaces CRNet by `layers` LSTM / BiLSTM layers
    (`baselines.LSTMEncoder`, BiLSTM needs an even d_model); `video_encoder` "mean" replaces VRNet by the mean of
    the valid clip vectors, so v has d_model + visual_dim dims and out_dim is unused, and "mlp" by that mean through
    Dense(vrnet_hidden)-ReLU-Dense(out_dim) (`baselines.MLPPool`). `clip_encoder` "none" is the visual-only model
    ("Visual + VRNet"): c = y, no trajectories.
    """

    vocab_size: int = 4096
    segments: int = 16
    d_model: int = 128
    heads: int = 2
    layers: int = 2
    ffn: int = 512
    dropout_pos: float = 0.3
    dropout_attn: float = 0.1
    visual_dim: int = 512
    vrnet_hidden: int = 1280
    vrnet_heads: int = 2
    out_dim: int = 128
    embedding: str = "tokens"
    clip_encoder: str = "transformer"
    video_encoder: str = "vrnet"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        for field, choices in (("clip_encoder", CLIP_ENCODERS), ("video_encoder", VIDEO_ENCODERS)):
            if getattr(self, field) not in choices:
                raise UserError(f"model.{field}={getattr(self, field)!r}: choose one of {', '.join(choices)}.")
        if self.clip_encoder == "none" and self.visual_dim == 0:
            raise UserError("model.clip_encoder='none' (visual-only) needs visual features; this model has none.")
        if self.clip_encoder == "bilstm" and self.d_model % 2:
            raise UserError(f"model.d_model={self.d_model}: a BiLSTM splits it in two directions; make it even.")


class TrajSV(nn.Module):
    """The TrajSV model; dropout (when `deterministic=False`) draws from the "dropout" rng stream."""

    config: TrajSVConfig = TrajSVConfig()

    def setup(self) -> None:
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        if cfg.clip_encoder == "transformer":
            self.crnet = CRNet(
                vocab_size=cfg.vocab_size,
                segments=cfg.segments,
                d_model=cfg.d_model,
                heads=cfg.heads,
                layers=cfg.layers,
                ffn=cfg.ffn,
                dropout_pos=cfg.dropout_pos,
                dropout_attn=cfg.dropout_attn,
                embedding=cfg.embedding,
                dtype=dtype,
            )
        elif cfg.clip_encoder != "none":
            self.lstm = LSTMEncoder(
                vocab_size=cfg.vocab_size,
                d_model=cfg.d_model,
                layers=cfg.layers,
                dropout_pos=cfg.dropout_pos,
                bidirectional=cfg.clip_encoder == "bilstm",
                embedding=cfg.embedding,
                dtype=dtype,
            )
        if cfg.video_encoder == "vrnet":
            self.vrnet = VRNet(hidden=cfg.vrnet_hidden, d_out=cfg.out_dim, heads=cfg.vrnet_heads, dtype=dtype)
        elif cfg.video_encoder == "mlp":
            self.mlp = MLPPool(hidden=cfg.vrnet_hidden, d_out=cfg.out_dim, dtype=dtype)

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
