"""CE2P (Ruan et al., AAAI 2019) with RCCA as its context module: CCNet's human-parsing network on LIP.

CE2P = a dilated ResNet + a context module on layer4 + an edge branch on layers 1-3 + a decoder with
layer1's low-level features + a fusion of decoder and edge features. CCNet replaces CE2P's pyramid pooling
by recurrent criss-cross attention (and adds the category consistent loss). Widths for ``channels = C``
(512 in CE2P; the tiny variant is narrower): context C, edge and decoder C/2 (256), low-level 3C/32 (48).

- context (``head``): conv_in 3x3 (C4 -> C) -> ``head.context`` (RCCA, R times) -> conv_out 3x3 (C -> C) ->
  concat with the input -> bottleneck 3x3 (C4 + C -> C): the layout of CCNet's RCCA module, whose output
  feeds the decoder. ``model.head.context`` is the RCCA module, so the category consistent loss hook of
  :class:`ccnet.engine.training_model.ModelWithLossModules` takes its features unchanged.
- edge branch (``head.edge``): layer1/2/3 -> 1x1 conv to C/2 each (the edge features), a shared 3x3 conv ->
  2 edge logits per level; levels upsampled to layer1's size and concatenated -> 1x1 conv -> 2 edge logits;
  the three C/2 maps concatenated = 3C/2 edge features (768).
- decoder (``head.decoder``): context -> 1x1 to C/2, upsampled to layer1's size; layer1 -> 1x1 to 3C/32;
  concatenated -> two 1x1 convs to C/2 -> ``classifier`` (the first parsing output).
- fusion: [decoder features, edge features] -> 1x1 to C/2 + norm + act + Dropout2d -> ``head.classifier``
  (the final parsing output).

Output: :class:`~ccnet.models.ccnet.SegmentationOutput` whose ``out`` is the final parsing logits (B, K, H, W)
upsampled to the input size (bilinear, ``align_corners=True`` as CE2P); in train mode ``aux`` is a
:class:`~ccnet.models.ccnet.ParsingAux` holding the decoder's logits (B, K, H, W) and the edge logits
(B, 2, H, W), both at the input size, which :class:`ccnet.losses.SegmentationLoss` turns into CE2P's loss
(two parsing CEs + the class-balanced edge CE, edge ground truth computed from the labels).

Output stride: 16 by default (``ce2p_rcca_*_os16``), CE2P's own: the criss-cross attention of a 473x473
input then runs on 30x30 features (4x fewer positions than at stride 8, so ~8x less attention work) and
layer1 gives the decoder its stride-4 detail; ``output_stride=8`` (mmsegmentation's CCNet layout) is an
override away (``create_model("ce2p_rcca_r101_os16", output_stride=8)``).
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from timm.models import FeatureInfo
from torch import Tensor, nn

from ccnet.models.architecture import Architecture, HeadConfig
from ccnet.models.backbone import (
    BACKBONES,
    BackboneSpec,
    _uncontract_dilation,
    conv_norm_relu,
    resolve_norm,
)
from ccnet.models.ccnet import ParsingAux, SegmentationOutput
from ccnet.models.heads import ConvNormAct, make_context
from ccnet.models.zoo import WeightsEntry
from ccnet.preprocess import IMAGENET_RGB, Preprocess

__all__ = ["CE2P", "CE2PHead", "EdgeBranch", "ParsingDecoder", "TinyParsingBackbone", "build_ce2p"]


def _upsample(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Bilinear, align_corners=True (CE2P's interpolation everywhere)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


class TinyParsingBackbone(nn.Module):
    """Four small stages for CPU runs and tests: (B, 3, H, W) -> ``[layer1, layer2, layer3, layer4]`` with
    strides 4, 8, 8, 8 and ``width // 2``, ``width``, ``width``, ``width`` channels (3x3 conv + norm + ReLU
    each, a stride-2 stem first)."""

    def __init__(self, width: int = 32, *, norm: str | type[nn.Module] = "bn") -> None:
        super().__init__()
        norm_layer = resolve_norm(norm)

        def layer(cin: int, cout: int, stride: int) -> nn.Sequential:
            return conv_norm_relu(cin, cout, stride, norm_layer)

        half = width // 2
        # named conv1..conv5 like TinyBackbone: "layerN" keys would look like a published ResNet layout to
        # the checkpoint-format detection of ccnet.models.convert
        self.conv1 = layer(3, half, 2)
        self.conv2 = layer(half, half, 2)
        self.conv3 = layer(half, width, 2)
        self.conv4 = layer(width, width, 1)
        self.conv5 = layer(width, width, 1)
        self.feature_info = FeatureInfo(
            [
                {"num_chs": half, "reduction": 4, "module": "conv2"},
                {"num_chs": width, "reduction": 8, "module": "conv3"},
                {"num_chs": width, "reduction": 8, "module": "conv4"},
                {"num_chs": width, "reduction": 8, "module": "conv5"},
            ],
            out_indices=(0, 1, 2, 3),
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        layer1 = self.conv2(self.conv1(x))
        layer2 = self.conv3(layer1)
        layer3 = self.conv4(layer2)
        return [layer1, layer2, layer3, self.conv5(layer3)]


def build_parsing_backbone(
    name: str, *, output_stride: int = 16, norm: str | type[nn.Module] = "bn", pretrained: bool = False
) -> nn.Module:
    """A features-only dilated ResNet returning ``[layer1, layer2, layer3, layer4]`` (strides 4, 8, os, os
    for os 8; 4, 8, 16, 16 for os 16); ``"tiny"``: :class:`TinyParsingBackbone`. Same variants and weights
    as :func:`ccnet.models.backbone.build_backbone` (only the returned stages differ)."""
    if name == "tiny":
        if pretrained:
            raise ValueError("backbone 'tiny' has no ImageNet weights")
        return TinyParsingBackbone(norm=norm)
    if output_stride not in (8, 16):
        raise ValueError(f"CE2P: output_stride must be 8 or 16, got {output_stride}")
    spec = BACKBONES.get(name, BackboneSpec(name))
    if not timm.is_model(spec.timm_name):
        raise ValueError(f"backbone {name!r} is neither one of {sorted(BACKBONES)} nor a timm model")
    kwargs = dict(
        spec.timm_kwargs,
        features_only=True,
        out_indices=(1, 2, 3, 4),
        norm_layer=resolve_norm(norm),
        output_stride=output_stride,
    )
    try:
        model = timm.create_model(spec.timm_name, pretrained=pretrained, **kwargs)
    except OSError as err:  # no network, no cached file
        raise RuntimeError(f"backbone {name!r}: could not fetch timm's ImageNet weights ({err})") from err
    if spec.ceil_mode_pool:
        model.maxpool.ceil_mode = True
    if not spec.contract_dilation:
        _uncontract_dilation(model)
    return model


class EdgeBranch(nn.Module):
    """CE2P's edge module. ``[layer1, layer2, layer3]`` -> (edge logits (B, 2, h1, w1), edge features
    (B, 3 * width, h1, w1)), at layer1's size (h1, w1)."""

    def __init__(
        self,
        in_channels: list[int],
        width: int,
        *,
        norm: str | type[nn.Module] = "bn",
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.reduce = nn.ModuleList(
            ConvNormAct(c, width, 1, norm=norm, activation=activation) for c in in_channels
        )
        self.edge_conv = nn.Conv2d(width, 2, 3, padding=1, bias=True)  # shared by the three levels
        self.fuse = nn.Conv2d(2 * len(in_channels), 2, 1, bias=True)

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        size = features[0].shape[-2:]
        reduced = [_upsample(conv(x), size) for conv, x in zip(self.reduce, features, strict=True)]
        edges = [self.edge_conv(x) for x in reduced]  # 3 x (B, 2, h1, w1)
        return self.fuse(torch.cat(edges, dim=1)), torch.cat(reduced, dim=1)


class ParsingDecoder(nn.Module):
    """CE2P's decoder. (context (B, C, h, w), layer1 (B, C1, h1, w1)) -> (logits (B, K, h1, w1), features
    (B, width, h1, w1))."""

    def __init__(
        self,
        context_channels: int,
        low_channels: int,
        width: int,
        low_width: int,
        num_classes: int,
        *,
        norm: str | type[nn.Module] = "bn",
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.context_proj = ConvNormAct(context_channels, width, 1, norm=norm, activation=activation)
        self.low_proj = ConvNormAct(low_channels, low_width, 1, norm=norm, activation=activation)
        self.fuse = nn.Sequential(
            ConvNormAct(width + low_width, width, 1, norm=norm, activation=activation),
            ConvNormAct(width, width, 1, norm=norm, activation=activation),
        )
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, context: Tensor, layer1: Tensor) -> tuple[Tensor, Tensor]:
        x = _upsample(self.context_proj(context), layer1.shape[-2:])
        x = self.fuse(torch.cat([x, self.low_proj(layer1)], dim=1))
        return self.classifier(x), x


class CE2PHead(nn.Module):
    """Context module (RCCA) + edge branch + decoder + fusion (see the module docstring).

    ``[layer1, layer2, layer3, layer4]`` -> (final logits, decoder logits, edge logits), all at layer1's size:
    (B, K, h1, w1), (B, K, h1, w1), (B, 2, h1, w1).
    """

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int,
        head: HeadConfig,
        *,
        norm: str | type[nn.Module] = "bn",
    ) -> None:
        super().__init__()
        channels, activation = head.channels, head.activation
        width, low_width = channels // 2, max(4, channels * 3 // 32)
        c4 = in_channels[3]
        self.conv_in = ConvNormAct(c4, channels, norm=norm, activation=activation)
        self.context = make_context(head, norm=norm)
        self.conv_out = ConvNormAct(channels, channels, norm=norm, activation=activation)
        self.bottleneck = ConvNormAct(c4 + channels, channels, norm=norm, activation=activation)
        self.edge = EdgeBranch(in_channels[:3], width, norm=norm, activation=activation)
        self.decoder = ParsingDecoder(
            channels, in_channels[0], width, low_width, num_classes, norm=norm, activation=activation
        )
        self.fusion = ConvNormAct(width + 3 * width, width, 1, norm=norm, activation=activation)
        self.dropout = nn.Dropout2d(head.dropout)
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        layer1, layer2, layer3, layer4 = features
        context = self.conv_out(self.context(self.conv_in(layer4)))  # (B, C, h4, w4)
        context = self.bottleneck(torch.cat([layer4, context], dim=1))
        edge_logits, edge_features = self.edge([layer1, layer2, layer3])
        decoder_logits, decoder_features = self.decoder(context, layer1)
        fused = self.fusion(torch.cat([decoder_features, edge_features], dim=1))
        return self.classifier(self.dropout(fused)), decoder_logits, edge_logits


class CE2P(nn.Module):
    """Human-parsing network: backbone (4 stages) -> :class:`CE2PHead`; see the module docstring.

    Attributes as :class:`~ccnet.models.ccnet.CCNet`: ``num_classes``, ``align_corners``, ``preprocess``,
    ``arch``, ``pretrained_cfg``, ``output_stride``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: CE2PHead,
        *,
        align_corners: bool = True,
        preprocess: Preprocess = IMAGENET_RGB,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.align_corners = align_corners
        self.preprocess = preprocess
        self.num_classes: int = head.classifier.out_channels
        self.arch: str | None = None
        self.pretrained_cfg: WeightsEntry | None = None

    @property
    def output_stride(self) -> int:
        return int(self.backbone.feature_info.reduction()[-1])

    def forward(self, x: Tensor) -> SegmentationOutput:
        """(B, 3, H, W) normalised images -> final logits (B, K, H, W); in train mode ``aux`` holds the
        decoder logits (B, K, H, W) and the edge logits (B, 2, H, W) as a :class:`ParsingAux`."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"CE2P: expected normalised images (B, 3, H, W), got shape {tuple(x.shape)}")
        size = x.shape[-2:]
        final, decoder, edge = self.head(self.backbone(x))
        out = F.interpolate(final, size=size, mode="bilinear", align_corners=self.align_corners)
        if not self.training:
            return SegmentationOutput(out)
        aux = ParsingAux(
            F.interpolate(decoder, size=size, mode="bilinear", align_corners=self.align_corners),
            F.interpolate(edge, size=size, mode="bilinear", align_corners=self.align_corners),
        )
        return SegmentationOutput(out, aux)


def build_ce2p(arch: Architecture, num_classes: int) -> CE2P:
    """A CE2P network as ``arch`` describes (``head.context`` is its context module, RCCA by default), with
    random weights (timm's ImageNet backbone with ``backbone_weights="timm"``)."""
    if arch.is_video:
        raise ValueError("CE2P is an image model (no clip_length)")
    backbone = build_parsing_backbone(
        arch.backbone,
        output_stride=arch.output_stride,
        norm=arch.norm,
        pretrained=arch.backbone_weights == "timm",
    )
    head = CE2PHead(backbone.feature_info.channels(), num_classes, arch.head, norm=arch.norm)
    return CE2P(backbone, head, align_corners=arch.align_corners, preprocess=arch.preprocess)
