"""Criss-cross attention modules for video: (B, C, T, H, W), T + H + W - 2 positions per query."""

from __future__ import annotations

from torch import nn

from ccnet.ops.cca import RecurrentCrissCrossAttention, _CrissCrossAttentionNd

__all__ = ["CrissCrossAttention3d", "RecurrentCrissCrossAttention3d"]


class CrissCrossAttention3d(_CrissCrossAttentionNd):
    """3-D criss-cross attention block on (B, C, T, H, W) clip features (CCNet, TPAMI 2020).

    Each position attends once to the T + H + W - 2 positions of its time line, row and column (one joint
    softmax); 1x1x1 query/key/value convs; ``y = gamma * attention + x`` with ``gamma`` initialised to 0.

    Args:
        in_channels: C.
        reduction: channel reduction of query and key.
    """

    num_axes = 3
    _conv = nn.Conv3d
    _layout = "(B, C, T, H, W)"


class RecurrentCrissCrossAttention3d(RecurrentCrissCrossAttention):
    """One shared :class:`CrissCrossAttention3d` applied ``recurrence`` times; (B, C, T, H, W) in and out."""

    _block = CrissCrossAttention3d
