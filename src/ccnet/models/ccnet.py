"""CCNet = dilated backbone + context head (+ auxiliary head), and the registered architectures.

``CCNet(x)`` maps normalised images (B, 3, H, W) to a :class:`SegmentationOutput` whose ``out`` holds the
logits (B, K, H, W) bilinearly upsampled to the input size; in train mode ``aux`` holds the auxiliary
head's logits (B, K, H, W) for deep supervision, else None. ``CCNet.decode`` gives both at feature
resolution (B, K, H/os, W/os).

:func:`build_ccnet` builds one from an :class:`~ccnet.models.architecture.Architecture`; the registered
variants (``ccnet.list_models()``) are listed in :mod:`ccnet.models.catalog` and built through
``ccnet.create_model(name, num_classes=..., **overrides)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor, nn

from ccnet.models.architecture import Architecture
from ccnet.models.backbone import build_backbone
from ccnet.models.heads import AuxHead, ContextHead, make_context
from ccnet.models.zoo import WeightsEntry
from ccnet.preprocess import IMAGENET_RGB, Preprocess

__all__ = ["CCNet", "ParsingAux", "SegmentationOutput", "build_ccnet", "build_parts"]


class ParsingAux(NamedTuple):
    """The training-only outputs of a human-parsing model with an edge branch (CE2P,
    :mod:`ccnet.models.ce2p`): ``parsing``, its first parsing logits (B, K, H, W), and ``edge``, its edge
    logits (B, 2, H, W). :class:`ccnet.losses.SegmentationLoss` adds the class-balanced edge loss for them."""

    parsing: Tensor
    edge: Tensor


class SegmentationOutput(NamedTuple):
    """Model output. ``out``: logits (B, K, H, W); ``aux``: auxiliary logits (B, K, H, W), train mode only
    (a :class:`ParsingAux` for models with an edge branch)."""

    out: Tensor
    aux: Tensor | ParsingAux | None = None


class CCNet(nn.Module):
    """Semantic segmentation network: backbone -> decode head (+ auxiliary head while training).

    Args:
        backbone: module mapping (B, 3, H, W) to ``[stage3, stage4]`` features at stride os, with a timm
            ``feature_info`` (see :func:`ccnet.models.backbone.build_backbone`).
        head: stage-4 features (B, C4, h, w) -> logits (B, K, h, w).
        aux_head: stage-3 features (B, C3, h, w) -> logits (B, K, h, w), or None.
        align_corners: of the final bilinear upsampling (True for mmseg's 769x769 Cityscapes models and the
            authors' code).
        preprocess: the input normalisation the weights expect (used by :class:`ccnet.engine.Segmenter`).

    Attributes set by ``create_model``: ``arch`` (registered name) and ``pretrained_cfg`` (the zoo entry of
    the loaded weights, or None).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        aux_head: nn.Module | None = None,
        *,
        align_corners: bool = False,
        preprocess: Preprocess = IMAGENET_RGB,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.aux_head = aux_head
        self.align_corners = align_corners
        self.preprocess = preprocess
        self.num_classes: int = head.classifier.out_channels
        self.arch: str | None = None
        self.pretrained_cfg: WeightsEntry | None = None

    @property
    def output_stride(self) -> int:
        return int(self.backbone.feature_info.reduction()[-1])

    def decode(self, x: Tensor) -> SegmentationOutput:
        """(B, 3, H, W) -> logits at feature resolution: ``out`` (B, K, h, w), ``aux`` too in train mode."""
        stage3, stage4 = self.backbone(x)  # (B, C3, h, w), (B, C4, h, w)
        out = self.head(stage4)
        aux = self.aux_head(stage3) if self.training and self.aux_head is not None else None
        return SegmentationOutput(out, aux)

    def forward(self, x: Tensor) -> SegmentationOutput:
        """(B, 3, H, W) normalised images -> logits (B, K, H, W) (+ ``aux`` (B, K, H, W) in train mode)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"CCNet: expected normalised images (B, 3, H, W), got shape {tuple(x.shape)}")
        size = x.shape[-2:]
        out, aux = self.decode(x)
        out = F.interpolate(out, size=size, mode="bilinear", align_corners=self.align_corners)
        if aux is not None:
            aux = F.interpolate(aux, size=size, mode="bilinear", align_corners=self.align_corners)
        return SegmentationOutput(out, aux)


def build_parts(
    arch: Architecture, num_classes: int, *, num_axes: int = 2
) -> tuple[nn.Module, ContextHead, AuxHead | None]:
    """(backbone, decode head, auxiliary head or None) with random weights (timm's ImageNet backbone with
    ``backbone_weights="timm"``; other weights are loaded by :func:`ccnet.models.factory.create_model`).

    The decode head sits on the backbone's last feature map, the auxiliary head on the one before (channels
    read from its timm ``feature_info``); ``num_axes=3`` gives the decode head a 3-D context module for
    clips. Modules are created in a fixed order (backbone, context, decode head, aux head), so that the 2-D
    and 3-D twins built from one seed hold the same weights.
    """
    backbone = build_backbone(
        arch.backbone,
        output_stride=arch.output_stride,
        norm=arch.norm,
        pretrained=arch.backbone_weights == "timm",
    )
    stage3_channels, stage4_channels = backbone.feature_info.channels()
    context = make_context(arch.head, norm=arch.norm, num_axes=num_axes)
    head = ContextHead(stage4_channels, num_classes, context, arch.head, norm=arch.norm)
    aux_head = AuxHead(stage3_channels, num_classes, arch.head, norm=arch.norm) if arch.head.aux else None
    return backbone, head, aux_head


def build_ccnet(arch: Architecture, num_classes: int) -> CCNet:
    """An image CCNet as ``arch`` describes, with random weights (see :func:`build_parts`)."""
    return CCNet(
        *build_parts(arch, num_classes), align_corners=arch.align_corners, preprocess=arch.preprocess
    )
