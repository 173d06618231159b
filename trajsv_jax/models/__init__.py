"""The TrajSV model in Flax: CRNet (clips), VRNet (videos) and the MAB/MSB attention blocks as pure functions."""

from trajsv_jax.models.attention import MAB, MSB, attention, keep_first_key_open, mab, msb
from trajsv_jax.models.crnet import CRNet
from trajsv_jax.models.trajsv import TrajSV, TrajSVConfig, count_params
from trajsv_jax.models.vrnet import VRNet

__all__ = [
    "MAB",
    "MSB",
    "CRNet",
    "TrajSV",
    "TrajSVConfig",
    "VRNet",
    "attention",
    "count_params",
    "keep_first_key_open",
    "mab",
    "msb",
]
