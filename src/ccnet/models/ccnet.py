"""CCNet = dilated backbone + context head (+ auxiliary head), and the registered architectures.

``CCNet(x)`` maps normalised images (B, 3, H, W) to a :class:`SegmentationOutput` whose ``out`` holds the
logits (B, K, H, W) bilinearly upsampled to the input size; in train mode ``aux`` holds the auxiliary
head's logits (B, K, H, W) for deep supervision, else None. ``CCNet.decode`` gives both at feature
resolution (B, K, H/os, W/os).

Every builder below is a variant given as data (backbone, output stride, context module, defaults) plus
keyword overrides; use them through ``ccnet.create_model(name, num_classes=..., **overrides)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch.nn.functional as F
from torch import Tensor, nn

from ccnet.models.backbone import build_backbone
from ccnet.models.convert import convert_backbone_checkpoint, load_checkpoint_strict
from ccnet.models.heads import AuxHead, ContextHead, make_context
from ccnet.models.registry import register_model
from ccnet.models.weights import cached_download, read_weights
from ccnet.models.zoo import AUTHORS_BGR, IMAGENET_RGB, IMAGENET_WEIGHTS, Preprocess, WeightsEntry

__all__ = ["CCNet", "SegmentationOutput", "build_ccnet"]


class SegmentationOutput(NamedTuple):
    """Model output. ``out``: logits (B, K, H, W); ``aux``: auxiliary logits (B, K, H, W), train mode only."""

    out: Tensor
    aux: Tensor | None = None


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


def build_ccnet(
    *,
    num_classes: int,
    backbone: str,
    output_stride: int = 8,
    context: str = "rcca",
    recurrence: int = 2,
    channels: int = 512,
    aux: bool = True,
    aux_channels: int = 256,
    activation: str = "relu",
    norm: str | type[nn.Module] = "bn",
    dropout: float = 0.1,
    align_corners: bool = False,
    backbone_weights: str | None = None,
    preprocess: Preprocess = IMAGENET_RGB,
) -> CCNet:
    """Assemble a CCNet-style network.

    Args:
        num_classes: K.
        backbone: a ``BACKBONES`` variant (``resnet50_v1c``, ``resnet101_v1c``, ``resnet101_ccnet``) or any
            timm model supporting ``features_only`` and ``output_stride``.
        output_stride: 8 (D8) or 16 (D16).
        context: ``"rcca"`` (CCNet), ``"nonlocal"`` (non-local ablation) or ``"none"`` (FCN baseline).
        recurrence: R, number of criss-cross attention passes (0 = none, weights kept).
        channels: width of the decode head (512).
        aux: build the auxiliary head on stage-3 features.
        aux_channels: its width: 256 (mmseg) or 512 (authors, SSSeg).
        activation: head activations, ``"relu"`` or ``"leaky_relu"`` (0.01, the authors' InPlace-ABN);
            the backbone always uses ReLU.
        norm: ``"bn"``, ``"syncbn"`` or a norm class (backbone and heads).
        dropout: Dropout2d rate before the classifiers.
        align_corners: of the final upsampling.
        backbone_weights: ImageNet initialisation of the backbone: None (random), ``"timm"`` (timm's
            weights), ``"open-mmlab"`` (the mmseg ``*_v1c`` files) or a path / URL (mmseg or timm layout).
        preprocess: input normalisation the model expects.
    """
    body = build_backbone(
        backbone, output_stride=output_stride, norm=norm, pretrained=backbone_weights == "timm"
    )
    if backbone_weights not in (None, "timm"):
        location = backbone_weights
        if backbone_weights == "open-mmlab":
            if backbone not in IMAGENET_WEIGHTS:
                raise ValueError(
                    f"backbone_weights='open-mmlab': available for {sorted(IMAGENET_WEIGHTS)} only"
                )
            location = str(cached_download(IMAGENET_WEIGHTS[backbone]))
        checkpoint, _ = read_weights(location)
        load_checkpoint_strict(
            body, convert_backbone_checkpoint(checkpoint), what=f"backbone weights {location}"
        )
    return assemble_ccnet(
        body,
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
        preprocess=preprocess,
    )


def assemble_ccnet(
    body: nn.Module,
    *,
    num_classes: int,
    context: str,
    recurrence: int,
    channels: int,
    aux: bool,
    aux_channels: int,
    activation: str,
    norm: str | type[nn.Module],
    dropout: float,
    align_corners: bool,
    preprocess: Preprocess = IMAGENET_RGB,
) -> CCNet:
    """The context head (on the last feature) and the auxiliary head (on the one before) on ``body``.

    ``body`` returns two feature maps and declares their channels in a timm ``feature_info``; the other
    arguments are as in :func:`build_ccnet`.
    """
    stage3_channels, stage4_channels = body.feature_info.channels()
    head = ContextHead(
        stage4_channels,
        num_classes,
        make_context(context, channels, recurrence=recurrence, norm=norm),
        channels=channels,
        dropout=dropout,
        norm=norm,
        activation=activation,
    )
    aux_head = None
    if aux:
        aux_head = AuxHead(
            stage3_channels,
            num_classes,
            channels=aux_channels,
            dropout=dropout,
            norm=norm,
            activation=activation,
        )
    return CCNet(body, head, aux_head, align_corners=align_corners, preprocess=preprocess)


def _variant(defaults: dict[str, Any], overrides: dict[str, Any]) -> CCNet:
    return build_ccnet(**{**defaults, **overrides})


_R50_D8 = {"backbone": "resnet50_v1c", "output_stride": 8}
_R101_D8 = {"backbone": "resnet101_v1c", "output_stride": 8}


@register_model
def ccnet_r50_d8(**overrides: Any) -> CCNet:
    """CCNet (RCCA, R=2) on ResNet-50-V1c, output stride 8: mmseg's ``ccnet_r50-d8``."""
    return _variant(_R50_D8, overrides)


@register_model
def ccnet_r101_d8(**overrides: Any) -> CCNet:
    """CCNet (RCCA, R=2) on ResNet-101-V1c, output stride 8: mmseg's ``ccnet_r101-d8``."""
    return _variant(_R101_D8, overrides)


@register_model
def ccnet_r50_d16(**overrides: Any) -> CCNet:
    """CCNet (RCCA, R=2) on ResNet-50-V1c, output stride 16."""
    return _variant({**_R50_D8, "output_stride": 16}, overrides)


@register_model
def ccnet_r101_d16(**overrides: Any) -> CCNet:
    """CCNet (RCCA, R=2) on ResNet-101-V1c, output stride 16."""
    return _variant({**_R101_D8, "output_stride": 16}, overrides)


@register_model
def ccnet_r101_d8_authors(**overrides: Any) -> CCNet:
    """The CCNet authors' network: deep stem 64-64-128, un-contracted dilations, leaky-ReLU heads, aux 512,
    BGR mean-only input, align_corners=True; fits ``convert_checkpoint(..., source="authors")``."""
    defaults = {
        "backbone": "resnet101_ccnet",
        "output_stride": 8,
        "activation": "leaky_relu",
        "aux_channels": 512,
        "align_corners": True,
        "preprocess": AUTHORS_BGR,
    }
    return _variant(defaults, overrides)


@register_model
def fcn_r50_d8(**overrides: Any) -> CCNet:
    """Ablation baseline: the CCNet head without a context module (mmseg's ``fcn_r50-d8`` head layout)."""
    return _variant({**_R50_D8, "context": "none"}, overrides)


@register_model
def fcn_r101_d8(**overrides: Any) -> CCNet:
    """Ablation baseline on ResNet-101 (the paper's ablation backbone), no context module."""
    return _variant({**_R101_D8, "context": "none"}, overrides)


@register_model
def nonlocal_r50_d8(**overrides: Any) -> CCNet:
    """Ablation twin: one non-local block in place of RCCA (mmseg's ``nonlocal_r50-d8`` head layout)."""
    return _variant({**_R50_D8, "context": "nonlocal"}, overrides)


@register_model
def nonlocal_r101_d8(**overrides: Any) -> CCNet:
    """Ablation twin on ResNet-101: one non-local block in place of RCCA."""
    return _variant({**_R101_D8, "context": "nonlocal"}, overrides)
