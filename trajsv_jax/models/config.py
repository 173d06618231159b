"""`TrajSVConfig`: every TrajSV hyperparameter, passed whole to `TrajSV` and to each submodule it builds (`CRNet`,
`LSTMEncoder`, `VRNet`, `MLPPool`), which read the fields they need."""

from __future__ import annotations

import dataclasses

from trajsv_jax.config import check, is_count, is_number
from trajsv_jax.errors import UserError

EMBEDDINGS = ("tokens", "matrices")  # token ids, or the binary segment matrices themselves
DTYPES = ("float32", "bfloat16", "float16")  # compute dtypes
CLIP_ENCODERS = ("transformer", "lstm", "bilstm", "none")  # CRNet, the "w/o CRNet" baselines, visual-only
VIDEO_ENCODERS = ("vrnet", "mean", "mlp")  # VRNet, or the "w/o VRNet" baselines
CHOICES = {"embedding": EMBEDDINGS, "dtype": DTYPES, "clip_encoder": CLIP_ENCODERS, "video_encoder": VIDEO_ENCODERS}
COUNTS = ("vocab_size", "segments", "d_model", "heads", "layers", "ffn", "vrnet_hidden", "vrnet_heads", "out_dim")


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
        """Refuse bad values by name before any module is built (they come from `--config.model.*`)."""
        for field, allowed in CHOICES.items():
            value = getattr(self, field)
            check(value in allowed, f"model.{field}", value, f"choose one of {', '.join(allowed)}")
        for field in COUNTS:
            check(is_count(getattr(self, field)), f"model.{field}", getattr(self, field), "a positive integer")
        check(is_count(self.visual_dim, 0), "model.visual_dim", self.visual_dim, "0 (none), or the features' dim")
        for field in ("dropout_pos", "dropout_attn"):
            value = getattr(self, field)
            check(is_number(value, 0, 1) and value < 1, f"model.{field}", value, "a probability in [0, 1)")
        split = [("d_model", "heads")] if self.clip_encoder == "transformer" else []
        split += [("vrnet_hidden", "vrnet_heads"), ("out_dim", "vrnet_heads")] if self.video_encoder == "vrnet" else []
        for dim, heads in split:  # attention splits these dims over its heads
            value, count = getattr(self, dim), getattr(self, heads)
            check(value % count == 0, f"model.{dim}", value, f"a multiple of model.{heads}={count}")
        if self.clip_encoder == "none" and self.visual_dim == 0:
            raise UserError("model.clip_encoder='none' (visual-only) needs visual features; this model has none.")
        if self.clip_encoder == "bilstm" and self.d_model % 2:
            raise UserError(f"model.d_model={self.d_model}: a BiLSTM splits it in two directions; make it even.")
