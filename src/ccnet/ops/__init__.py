"""Criss-cross attention: functional ops and modules, 2-D and 3-D."""

from ccnet.ops.cca import CrissCrossAttention, RecurrentCrissCrossAttention
from ccnet.ops.cca3d import CrissCrossAttention3d, RecurrentCrissCrossAttention3d
from ccnet.ops.functional import criss_cross_attention, criss_cross_attention_3d

__all__ = [
    "CrissCrossAttention",
    "CrissCrossAttention3d",
    "RecurrentCrissCrossAttention",
    "RecurrentCrissCrossAttention3d",
    "criss_cross_attention",
    "criss_cross_attention_3d",
]
