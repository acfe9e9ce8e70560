"""ccnet: semantic segmentation with criss-cross attention (CCNet), in plain PyTorch."""

from ccnet.ops import (
    CrissCrossAttention,
    CrissCrossAttention3d,
    RecurrentCrissCrossAttention,
    RecurrentCrissCrossAttention3d,
    criss_cross_attention,
    criss_cross_attention_3d,
)

__version__ = "0.1.0"

__all__ = [
    "CrissCrossAttention",
    "CrissCrossAttention3d",
    "RecurrentCrissCrossAttention",
    "RecurrentCrissCrossAttention3d",
    "__version__",
    "criss_cross_attention",
    "criss_cross_attention_3d",
]
