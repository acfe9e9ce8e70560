"""Tiny CCNet-style networks (~50k parameters) for CPU: the default config, tests and the context demo.

Layout (the CCNet layout at toy size, same module names as the big models, same :class:`SegmentationOutput`):

- backbone: three 3x3 conv + BN + ReLU layers, strides 2, 2, 1 (``width`` // 2, ``width``, ``width``
  channels): features at stride 4 (a 16x16 grid on 64x64 images) with a receptive field of 15 px, so a
  pixel sees its neighbourhood but not the whole image; it returns ``[stage3, stage4]`` = the outputs of its
  second and third layers, with a timm ``feature_info``;
- head: :class:`~ccnet.models.heads.ContextHead` (3x3 conv -> context module -> 3x3 conv -> concat with the
  features -> 3x3 conv -> dropout -> 1x1 classifier), the context module being RCCA (``ccnet_tiny``), none
  (``fcn_tiny``) or a non-local block (``nonlocal_tiny``);
- aux head on the stage-3 features (training only); logits bilinearly upsampled to the input size.
"""

from __future__ import annotations

from typing import Any

from timm.models import FeatureInfo
from torch import Tensor, nn

from ccnet.models.backbone import resolve_norm
from ccnet.models.ccnet import CCNet, assemble_ccnet
from ccnet.models.registry import register_model

__all__ = ["TinyBackbone", "build_tiny"]


class TinyBackbone(nn.Module):
    """(B, 3, H, W) -> ``[stage3, stage4]``, both (B, width, ceil(H/4), ceil(W/4)).

    Args:
        width: channels of the stride-4 features.
        norm: ``"bn"``, ``"syncbn"`` or a norm class.
    """

    def __init__(self, width: int = 32, *, norm: str | type[nn.Module] = "bn") -> None:
        super().__init__()
        norm_layer = resolve_norm(norm)

        def layer(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                norm_layer(cout),
                nn.ReLU(inplace=True),
            )

        self.conv1 = layer(3, width // 2, 2)
        self.conv2 = layer(width // 2, width, 2)
        self.conv3 = layer(width, width, 1)
        self.feature_info = FeatureInfo(
            [
                {"num_chs": width, "reduction": 4, "module": "conv2"},
                {"num_chs": width, "reduction": 4, "module": "conv3"},
            ],
            out_indices=(0, 1),
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        stage3 = self.conv2(self.conv1(x))  # (B, width, H/4, W/4)
        return [stage3, self.conv3(stage3)]


def build_tiny(
    *,
    num_classes: int,
    context: str = "rcca",
    recurrence: int = 2,
    width: int = 32,
    channels: int = 32,
    aux: bool = True,
    aux_channels: int = 16,
    activation: str = "relu",
    norm: str | type[nn.Module] = "bn",
    dropout: float = 0.1,
    align_corners: bool = False,
) -> CCNet:
    """Assemble a tiny network (see the module docstring); arguments as in
    :func:`ccnet.models.ccnet.build_ccnet`, plus ``width`` (backbone channels)."""
    return assemble_ccnet(
        TinyBackbone(width, norm=norm),
        num_classes=num_classes,
        context=context,
        recurrence=recurrence,
        channels=channels,
        aux=aux,
        aux_channels=aux_channels,
        activation=activation,
        norm=norm,
        dropout=dropout,
        align_corners=align_corners,
    )


@register_model
def ccnet_tiny(**overrides: Any) -> CCNet:
    """Tiny CCNet (RCCA, R=2, ~55k parameters) for CPU runs on the built-in context dataset."""
    return build_tiny(**{"context": "rcca", **overrides})


@register_model
def fcn_tiny(**overrides: Any) -> CCNet:
    """Ablation twin of ``ccnet_tiny`` without a context module."""
    return build_tiny(**{"context": "none", **overrides})


@register_model
def nonlocal_tiny(**overrides: Any) -> CCNet:
    """Ablation twin of ``ccnet_tiny`` with one non-local block in place of RCCA."""
    return build_tiny(**{"context": "nonlocal", **overrides})
