"""Criss-cross attention modules (2-D): CCA and its recurrent form RCCA."""

from __future__ import annotations

import numbers

import torch
from torch import Tensor, nn

from ccnet.ops.dispatch import cca_block
from ccnet.ops.functional import format_shape

__all__ = ["CrissCrossAttention", "RecurrentCrissCrossAttention"]


def _check_integer(module: str, name: str, value: object) -> None:
    """Refuse a non-integer hyper-parameter: ``recurrence=2.5`` would run ``range(2.5)`` late or round
    silently, and ``True`` is an int to Python but never a channel count."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{module}: {name} must be an integer, got {value!r} ({type(value).__name__})")


class _CrissCrossAttentionNd(nn.Module):
    """Shared body of the 2-D and 3-D modules; ``num_axes`` is the number of grid axes."""

    num_axes: int
    _conv: type[nn.Module]
    _layout: str

    def __init__(self, in_channels: int, reduction: int = 8) -> None:
        super().__init__()
        _check_integer(type(self).__name__, "in_channels", in_channels)
        _check_integer(type(self).__name__, "reduction", reduction)
        if in_channels < 1 or reduction < 1 or in_channels // reduction < 1:
            raise ValueError(
                f"{type(self).__name__}: need in_channels >= reduction >= 1, got in_channels={in_channels}, "
                f"reduction={reduction}"
            )
        self.in_channels = in_channels
        self.reduction = reduction
        reduced = in_channels // reduction
        self.query_conv = self._conv(in_channels, reduced, 1)
        self.key_conv = self._conv(in_channels, reduced, 1)
        self.value_conv = self._conv(in_channels, in_channels, 1)
        # Zero: a fresh module is the identity, and the attention is blended in as training goes.
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor, *, keep_aggregate: bool = True) -> Tensor:
        """y = gamma * CCA(x) + x; input and output (B, C, *grid), output in channels-last memory.

        Any input layout works; channels-last inputs avoid one transposed copy. ``keep_aggregate``: whether
        training keeps the aggregate A x for backward or recomputes it there (see
        :class:`RecurrentCrissCrossAttention`); the result is the same.
        """
        if not torch.jit.is_tracing() and (
            x.dim() != self.num_axes + 2 or x.shape[1] != self.in_channels or x.numel() == 0
        ):
            raise ValueError(
                f"{type(self).__name__}: expected a non-empty input {self._layout} with "
                f"C={self.in_channels}, got shape {format_shape(x)}"
            )
        weight_dtype = self.value_conv.weight.dtype
        # Under autocast any floating input is cast by the op; otherwise input and weights must agree, and
        # torch's own message ("Input type (double) and bias type (float)...") names neither the module nor
        # the shape.
        if (
            not torch.jit.is_tracing()
            and x.dtype != weight_dtype
            and not (x.is_floating_point() and torch.is_autocast_enabled(x.device.type))
        ):
            raise ValueError(
                f"{type(self).__name__}: input of shape {format_shape(x)} is {x.dtype} but the module's "
                f"weights are {weight_dtype}; convert one of them (x.to({weight_dtype}) or "
                f"module.to({x.dtype})), or run under torch.autocast"
            )
        # One projection for query and key; the value projection runs after aggregation, inside the op.
        qk_weight = torch.cat([self.query_conv.weight, self.key_conv.weight]).flatten(1)  # (2C', C)
        qk_bias = torch.cat([self.query_conv.bias, self.key_conv.bias])
        return cca_block(
            x,
            self.num_axes,
            qk_weight,
            qk_bias,
            self.value_conv.weight.flatten(1),
            self.value_conv.bias,
            self.gamma,
            keep_aggregate=keep_aggregate,
        )

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, reduction={self.reduction}"


class CrissCrossAttention(_CrissCrossAttentionNd):
    """Criss-cross attention block (CCNet, Huang et al. 2019) on (B, C, H, W) features.

    query/key: 1x1 convs C -> C // reduction; value: 1x1 conv C -> C (all with bias). Each pixel attends to
    the H + W - 1 pixels of its row and column (one joint softmax); ``y = gamma * attention + x`` with the
    scalar ``gamma`` initialised to 0.

    Args:
        in_channels: C.
        reduction: channel reduction of query and key (8 in the paper).
    """

    num_axes = 2
    _conv = nn.Conv2d
    _layout = "(B, C, H, W)"


class RecurrentCrissCrossAttention(nn.Module):
    """Recurrent criss-cross attention (RCCA): one :class:`CrissCrossAttention` applied ``recurrence`` times.

    With the shared weights applied twice every pixel gathers context from the whole image.
    (B, C, H, W) -> (B, C, H, W); ``recurrence=0`` is the identity.

    In training only the last application keeps its aggregate A x for backward; the earlier ones recompute
    theirs in their own backward. Backward runs the last application first, and its peak is the training
    step's: an earlier application's kept aggregate, a (B, C, H, W) tensor, would sit idle through it.

    Args:
        in_channels: C.
        recurrence: R, the number of applications (2 in the paper).
        reduction: channel reduction of query and key.
    """

    def __init__(self, in_channels: int, recurrence: int = 2, reduction: int = 8) -> None:
        super().__init__()
        _check_integer(type(self).__name__, "recurrence", recurrence)
        if recurrence < 0:
            raise ValueError(f"{type(self).__name__}: recurrence must be >= 0, got {recurrence}")
        self.recurrence = recurrence
        self.cca = self._block(in_channels, reduction)

    _block = CrissCrossAttention

    def forward(self, x: Tensor) -> Tensor:
        for loop in range(self.recurrence):
            x = self.cca(x, keep_aggregate=loop == self.recurrence - 1)
        return x

    def extra_repr(self) -> str:
        return f"recurrence={self.recurrence}"
