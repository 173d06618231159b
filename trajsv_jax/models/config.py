"""`TrajSVConfig`: every TrajSV hyperparameter, passed whole to `TrajSV` and to each submodule it builds (`CRNet`,
`LSTMEncoder`, `VRNet`, `MLPPool`), which read the fields they need."""

from __future__ import annotations

import dataclasses

from trajsv_jax.errors import UserError

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
