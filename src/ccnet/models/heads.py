"""Segmentation heads: the context head (RCCA / non-local / none) and the auxiliary FCN head.

Shapes: B batch, C channels, K classes; heads keep the spatial size of their input features.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ccnet.models.architecture import ACTIVATIONS, CONTEXTS, HeadConfig
from ccnet.models.backbone import resolve_norm
from ccnet.ops import RecurrentCrissCrossAttention, RecurrentCrissCrossAttention3d

__all__ = ["AuxHead", "ContextHead", "ConvNormAct", "NonLocal2d", "make_activation", "make_context"]


def make_activation(activation: str) -> nn.Module:
    """``"relu"`` (mmseg, SSSeg) or ``"leaky_relu"`` (slope 0.01: InPlace-ABN in the authors' code)."""
    if activation == "relu":
        return nn.ReLU(inplace=True)
    if activation == "leaky_relu":
        return nn.LeakyReLU(0.01, inplace=True)
    raise ValueError(f"activation: unknown {activation!r}; allowed: {list(ACTIVATIONS)}")


class ConvNormAct(nn.Sequential):
    """kxk conv (no bias, 'same' padding) -> norm -> activation; children ``conv``, ``norm``, ``act``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        norm: str | type[nn.Module] = "bn",
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = resolve_norm(norm)(out_channels)
        self.act = make_activation(activation)


class NonLocal2d(nn.Module):
    """Non-local block (Wang et al. 2018, embedded Gaussian) as in mmseg's NLHead ablation.

    theta/phi/g: 1x1 convs C -> C // reduction with bias; A = softmax(theta^T phi / sqrt(C')) over all HW
    positions; y = x + norm(conv_out(g A^T)), conv_out a 1x1 conv C' -> C without bias whose norm weight
    starts at 0 (a fresh block is the identity). (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, in_channels: int, reduction: int = 2, *, norm: str | type[nn.Module] = "bn") -> None:
        super().__init__()
        inner = in_channels // reduction
        self.theta = nn.Conv2d(in_channels, inner, 1)
        self.phi = nn.Conv2d(in_channels, inner, 1)
        self.g = nn.Conv2d(in_channels, inner, 1)
        self.conv_out = nn.Conv2d(inner, in_channels, 1, bias=False)
        self.norm = resolve_norm(norm)(in_channels)
        nn.init.zeros_(self.norm.weight)

    def forward(self, x: Tensor) -> Tensor:
        B, _, H, W = x.shape
        theta = self.theta(x).flatten(2)  # (B, C', HW)
        phi = self.phi(x).flatten(2)  # (B, C', HW)
        g = self.g(x).flatten(2)  # (B, C', HW)
        attention = torch.einsum("bcu,bci->bui", theta, phi).div(math.sqrt(theta.shape[1])).softmax(-1)
        y = torch.einsum("bui,bci->bcu", attention, g).reshape(B, -1, H, W)  # (B, C', H, W)
        return x + self.norm(self.conv_out(y))


def make_context(head: HeadConfig, *, norm: str | type[nn.Module] = "bn", num_axes: int = 2) -> nn.Module:
    """The context module ``head.context`` names, on ``head.channels`` channels: recurrent criss-cross
    attention over (B, C, H, W) features, or over (B, C, T, H, W) clips with ``num_axes=3``; a non-local
    block (2-D only); or the identity (``"none"``)."""
    if head.context == "rcca":
        rcca = RecurrentCrissCrossAttention if num_axes == 2 else RecurrentCrissCrossAttention3d
        return rcca(head.channels, recurrence=head.recurrence, reduction=head.reduction)
    if num_axes != 2:
        raise ValueError(
            f"video models need the criss-cross attention context (context='rcca'), got {head.context!r}"
        )
    if head.context == "nonlocal":
        return NonLocal2d(head.channels, norm=norm)
    if head.context == "none":
        return nn.Identity()
    raise ValueError(f"context: unknown {head.context!r}; allowed: {list(CONTEXTS)}")


class ContextHead(nn.Module):
    """The CCNet decode head with a pluggable context module (mmseg's CCHead / NLHead / FCNHead layout).

    conv_in 3x3 (C_in -> C) + norm + act; ``context`` (RCCA applied R times, a non-local block, or the
    identity for the FCN baseline); conv_out 3x3 (C -> C) + norm + act; concat([input, result]) ->
    bottleneck 3x3 (C_in + C -> C) + norm + act; Dropout2d; 1x1 classifier with bias. C, the dropout rate
    and the activation come from ``head``.

    (B, C_in, h, w) stage-4 features -> (B, K, h, w) logits.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        context: nn.Module,
        head: HeadConfig,
        *,
        norm: str | type[nn.Module] = "bn",
    ) -> None:
        super().__init__()
        channels, activation = head.channels, head.activation
        self.conv_in = ConvNormAct(in_channels, channels, norm=norm, activation=activation)
        self.context = context
        self.conv_out = ConvNormAct(channels, channels, norm=norm, activation=activation)
        self.bottleneck = ConvNormAct(in_channels + channels, channels, norm=norm, activation=activation)
        self.dropout = nn.Dropout2d(head.dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(x, self.context(self.conv_in(x)))

    def classify(self, x: Tensor, context: Tensor) -> Tensor:
        """The layers after the context module: features x (B, C_in, h, w) and the context module's output
        (B, C, h, w) -> logits (B, K, h, w). Separate so that video models can run the context module on
        whole clips and the rest frame by frame."""
        y = self.conv_out(context)  # (B, C, h, w)
        y = self.bottleneck(torch.cat([x, y], dim=1))  # (B, C_in + C, h, w) -> (B, C, h, w)
        return self.classifier(self.dropout(y))  # (B, K, h, w)


class AuxHead(nn.Module):
    """Auxiliary FCN head for deep supervision on stage-3 features (used in training only).

    conv_in 3x3 (C_in -> C) + norm + act; Dropout2d; 1x1 classifier with bias; C = ``head.aux_channels``,
    dropout and activation as in ``head``. (B, C_in, h, w) -> (B, K, h, w).
    """

    def __init__(
        self, in_channels: int, num_classes: int, head: HeadConfig, *, norm: str | type[nn.Module] = "bn"
    ) -> None:
        super().__init__()
        channels = head.aux_channels
        self.conv_in = ConvNormAct(in_channels, channels, norm=norm, activation=head.activation)
        self.dropout = nn.Dropout2d(head.dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.dropout(self.conv_in(x)))
