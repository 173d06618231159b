"""The TrajSV model in Flax: CRNet (clips), VRNet (videos), the MAB/MSB attention blocks as pure functions, and the
Table V ablation baselines (LSTM / BiLSTM clip encoder, mean / MLP video encoder)."""

from trajsv_jax.models.attention import MAB, MSB, attention, keep_first_key_open, mab, msb
from trajsv_jax.models.baselines import LSTMEncoder, MLPPool
from trajsv_jax.models.config import TrajSVConfig
from trajsv_jax.models.crnet import CRNet
from trajsv_jax.models.trajsv import TrajSV, count_params
from trajsv_jax.models.vrnet import VRNet

__all__ = [
    "MAB",
    "MSB",
    "CRNet",
    "LSTMEncoder",
    "MLPPool",
    "TrajSV",
    "TrajSVConfig",
    "VRNet",
    "attention",
    "count_params",
    "keep_first_key_open",
    "mab",
    "msb",
]
