"""TrajSV: CRNet per clip, fusion with the frozen visual vector, VRNet per video, L2-normalised video vector.

Takes the batch dict the input pipeline yields:

  tokens        int32 [B, n, m]     token ids, 0 = padding/empty       (embedding="tokens")
  matrices      bool  [B, n, m, C]  binary segment matrices            (embedding="matrices")
  segment_mask  bool  [B, n, m]     valid segments
  clip_mask     bool  [B, n]        valid clips
  visual        float [B, n, D]     frozen visual vectors y            (unused when visual_dim = 0)
  visual_mask   bool  [B, n]        clips that have a visual vector; y = 0 elsewhere

and returns v [B, out_dim] (unit norm); `encode` also returns the clip vectors c [B, n, d_model + visual_dim].
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from trajsv_jax.models.crnet import CRNet
from trajsv_jax.models.vrnet import VRNet

Batch = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class TrajSVConfig:
    """Model hyperparameters (paper VI-A defaults); `TrajSVConfig(**config_dict)` works with ml_collections.

    visual_dim = 0 is the trajectory-only model (paper Table V, "Trajectory + VRNet"). `dtype` is the compute
    dtype ("bfloat16" on accelerators); parameters are always float32.
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
    dtype: str = "float32"


class TrajSV(nn.Module):
    """The TrajSV model; dropout (when `deterministic=False`) draws from the "dropout" rng stream."""

    config: TrajSVConfig = TrajSVConfig()

    def setup(self) -> None:
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
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
        self.vrnet = VRNet(hidden=cfg.vrnet_hidden, d_out=cfg.out_dim, heads=cfg.vrnet_heads, dtype=dtype)

    def clips(self, batch: Batch, deterministic: bool = True) -> jax.Array:
        """Clip vectors c = [t, y]: [B, n, d_model + visual_dim], in the compute dtype."""
        segments = batch["tokens"] if self.config.embedding == "tokens" else batch["matrices"]
        segment_mask = batch["segment_mask"]
        b, n, m = segment_mask.shape
        flat = segments.reshape(b * n, m, *segments.shape[3:])
        t = self.crnet(flat, segment_mask.reshape(b * n, m), deterministic).reshape(b, n, -1)
        if self.config.visual_dim == 0:
            return t
        y = jnp.where(batch["visual_mask"][..., None], batch["visual"], 0).astype(t.dtype)
        return jnp.concatenate([t, y], axis=-1)

    def encode(self, batch: Batch, deterministic: bool = True) -> dict[str, jax.Array]:
        """{"video": v [B, out_dim] unit-norm float32, "clips": c [B, n, d_model + visual_dim]}."""
        c = self.clips(batch, deterministic)
        v = self.vrnet(c, batch["clip_mask"]).astype(jnp.float32)
        v = v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-12)  # as torch.nn.functional.normalize
        return {"video": v, "clips": c}

    def __call__(self, batch: Batch, deterministic: bool = True) -> jax.Array:
        """Video vectors v [B, out_dim], L2-normalised, float32."""
        return self.encode(batch, deterministic)["video"]


def count_params(params: Any) -> int:
    """Number of scalars in a parameter pytree."""
    return sum(x.size for x in jax.tree_util.tree_leaves(params))
