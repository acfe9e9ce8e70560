"""Dilated backbones from timm, returning the last two feature stages.

A backbone here is a timm ``features_only`` model built with ``out_indices=(-2, -1)``: called on
(B, 3, H, W) it returns ``[c3, c4]``, the stage-3 features (B, C3, H/os, W/os) that feed the auxiliary head
and the stage-4 features (B, C4, H/os, W/os) that feed the decode head (os = output stride, 8 or 16).
Channels and strides are read from ``backbone.feature_info`` (never hard-coded).

Named variants (``BACKBONES``) pin the dilated-ResNet layouts of the published checkpoints:

* ``resnet50_v1c`` / ``resnet101_v1c``: mmsegmentation's and SSSegmentation's ResNetV1c = timm
  ``resnet50c`` / ``resnet101c``: deep stem 3x3 convs 3->32 (stride 2), 32->32, 32->64, max-pool, bottleneck
  blocks with the stride on the 3x3 conv, 1x1-conv downsample. timm's ``output_stride`` dilates the last
  stages with mmseg's "contract_dilation": the first block of a dilated stage keeps the previous dilation
  (D8: layer3 1,2,2,..., layer4 2,4,4; D16: layer4 1,2,2).
* ``resnet101_ccnet``: the CCNet authors' backbone = timm ``resnet101s`` (deep stem 64-64-128) with the
  max-pool in ``ceil_mode`` and *every* block of a dilated stage at the full dilation (D8: layer3 2,2,...,
  layer4 4,4,4), fixed up after construction.

``"tiny"`` is :class:`TinyBackbone`, a three-layer network for CPU runs, tests and the built-in tasks. Any
other name is passed to timm as is (any model supporting ``features_only`` and ``output_stride``).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import timm
from timm.models import FeatureInfo
from torch import Tensor, nn

__all__ = ["BACKBONES", "BackboneSpec", "TinyBackbone", "build_backbone", "resolve_norm"]


@dataclass(frozen=True)
class BackboneSpec:
    """A dilated-ResNet variant built from a timm architecture.

    Args:
        timm_name: timm architecture name.
        contract_dilation: first block of a dilated stage at half the dilation (timm's and mmseg's
            behaviour). False sets every block of the stage to the full dilation (the authors' code).
        ceil_mode_pool: stem max-pool with ``ceil_mode=True`` (the authors' code).
        timm_kwargs: extra keyword arguments for ``timm.create_model``.
    """

    timm_name: str
    contract_dilation: bool = True
    ceil_mode_pool: bool = False
    timm_kwargs: dict[str, Any] = field(default_factory=dict)


BACKBONES: dict[str, BackboneSpec] = {
    "resnet50_v1c": BackboneSpec("resnet50c"),
    "resnet101_v1c": BackboneSpec("resnet101c"),
    "resnet101_ccnet": BackboneSpec("resnet101s", contract_dilation=False, ceil_mode_pool=True),
}

_NORMS: dict[str, type[nn.Module]] = {"bn": nn.BatchNorm2d, "syncbn": nn.SyncBatchNorm}


def resolve_norm(norm: str | type[nn.Module]) -> type[nn.Module]:
    """``"bn"`` -> BatchNorm2d, ``"syncbn"`` -> SyncBatchNorm; a class is returned unchanged."""
    if isinstance(norm, str):
        try:
            return _NORMS[norm.lower()]
        except KeyError:
            raise ValueError(f"norm: unknown {norm!r}; allowed: {sorted(_NORMS)} or a norm class") from None
    return norm


def conv_norm_relu(
    in_channels: int, out_channels: int, stride: int, norm_layer: type[nn.Module]
) -> nn.Sequential:
    """3x3 conv (no bias) + norm + ReLU: the layer of the tiny backbones."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        norm_layer(out_channels),
        nn.ReLU(inplace=True),
    )


class TinyBackbone(nn.Module):
    """Three 3x3 conv + BN + ReLU layers, strides 2, 2, 1 (``width // 2``, ``width``, ``width`` channels):
    (B, 3, H, W) -> ``[stage3, stage4]``, both (B, width, ceil(H/4), ceil(W/4)), the outputs of the second
    and third layers. Its receptive field (15 px) covers a pixel's neighbourhood, not the whole image, so the
    built-in context tasks need the context module to be solved.

    Args:
        width: channels of the stride-4 features.
        norm: ``"bn"``, ``"syncbn"`` or a norm class.
    """

    def __init__(self, width: int = 32, *, norm: str | type[nn.Module] = "bn") -> None:
        super().__init__()
        norm_layer = resolve_norm(norm)

        def layer(cin: int, cout: int, stride: int) -> nn.Sequential:
            return conv_norm_relu(cin, cout, stride, norm_layer)

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


def build_backbone(
    name: str,
    *,
    output_stride: int = 8,
    norm: str | type[nn.Module] = "bn",
    pretrained: bool = False,
) -> nn.Module:
    """A features-only model returning ``[stage3, stage4]`` features (see the module docstring).

    Args:
        name: a key of ``BACKBONES``, ``"tiny"`` or any timm model name.
        output_stride: 8 or 16 (32 = no dilation); ignored by the tiny backbone (stride 4).
        norm: ``"bn"``, ``"syncbn"`` or a norm-layer class.
        pretrained: load timm's own ImageNet weights (needs the network).
    """
    if name == "tiny":
        if pretrained:
            raise ValueError("backbone 'tiny' has no ImageNet weights")
        return TinyBackbone(norm=norm)
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    spec = BACKBONES.get(name, BackboneSpec(name))
    if not timm.is_model(spec.timm_name):
        close = difflib.get_close_matches(name, [*BACKBONES, *timm.list_models()], n=5)
        raise ValueError(
            f"backbone {name!r} is neither one of {sorted(BACKBONES)} nor a timm model; close: {close}"
        )
    kwargs = dict(spec.timm_kwargs, features_only=True, out_indices=(-2, -1), norm_layer=resolve_norm(norm))
    if output_stride != 32:
        kwargs["output_stride"] = output_stride
    try:
        model = timm.create_model(spec.timm_name, pretrained=pretrained, **kwargs)
    except OSError as err:  # no network, no cached file
        raise RuntimeError(f"backbone {name!r}: could not fetch timm's ImageNet weights ({err})") from err
    if spec.ceil_mode_pool:
        model.maxpool.ceil_mode = True
    if not spec.contract_dilation:
        _uncontract_dilation(model)
    return model


def _uncontract_dilation(model: nn.Module) -> None:
    """Give every 3x3 conv of a dilated ResNet stage the stage's full dilation (padding = dilation)."""
    for stage_name in ("layer1", "layer2", "layer3", "layer4"):
        stage = getattr(model, stage_name, None)
        if stage is None:
            continue
        convs = [block.conv2 for block in stage]
        dilation = max(conv.dilation[0] for conv in convs)
        for conv in convs:
            if conv.stride != (1, 1) and dilation > 1:
                raise ValueError(f"{stage_name}: cannot dilate a strided conv")
            conv.dilation = (dilation, dilation)
            conv.padding = (dilation, dilation)
