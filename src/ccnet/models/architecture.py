"""What a registered model is made of, as data: :class:`HeadConfig` (the decode and auxiliary heads) inside
:class:`Architecture` (backbone, output stride, head, input normalisation, video options).

Every registered name (``ccnet.list_models()``) is an :class:`Architecture` plus a builder; keyword
arguments of ``ccnet.create_model`` and the ``model.*`` keys of a run config override its fields
(:meth:`Architecture.with_overrides`), head fields included: ``create_model("ccnet_r50_d8", recurrence=1)``
sets ``architecture.head.recurrence``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import nn

from ccnet.preprocess import IMAGENET_RGB, Preprocess

__all__ = ["CONTEXTS", "FRAMES", "Architecture", "HeadConfig"]

CONTEXTS = ("rcca", "nonlocal", "none")
ACTIVATIONS = ("relu", "leaky_relu")
FRAMES = ("all", "centre")


@dataclass(frozen=True)
class HeadConfig:
    """The decode head (``conv_in -> context -> conv_out -> concat -> bottleneck -> classifier``) and the
    auxiliary FCN head of a CCNet-style model.

    Attributes:
        context: the context module: ``"rcca"`` (CCNet), ``"nonlocal"`` (non-local ablation) or ``"none"``
            (the FCN baseline).
        recurrence: R, the number of criss-cross attention passes with shared weights (0: none, weights
            kept).
        reduction: channel reduction of the attention's query and key (8 in the paper).
        channels: width of the decode head (512).
        activation: ``"relu"`` or ``"leaky_relu"`` (slope 0.01: InPlace-ABN in the authors' code); the
            backbone always uses ReLU.
        dropout: Dropout2d rate before the classifiers.
        aux: build the auxiliary head on the stage-3 features (deep supervision while training).
        aux_channels: its width: 256 (mmseg) or 512 (authors, SSSeg).
    """

    context: Literal["rcca", "nonlocal", "none"] = "rcca"
    recurrence: int = 2
    reduction: int = 8
    channels: int = 512
    activation: Literal["relu", "leaky_relu"] = "relu"
    dropout: float = 0.1
    aux: bool = True
    aux_channels: int = 256

    def __post_init__(self) -> None:
        if self.context not in CONTEXTS:
            raise ValueError(f"context: unknown {self.context!r}; allowed: {list(CONTEXTS)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation: unknown {self.activation!r}; allowed: {list(ACTIVATIONS)}")
        if self.recurrence < 0:
            raise ValueError(f"recurrence must be >= 0, got {self.recurrence}")


@dataclass(frozen=True)
class Architecture:
    """A CCNet-style network: dilated backbone + :class:`HeadConfig` heads (+ 3-D attention over clips).

    Attributes:
        backbone: a ``ccnet.models.backbone.BACKBONES`` variant (``resnet50_v1c``, ``resnet101_v1c``,
            ``resnet101_ccnet``), ``"tiny"`` (:class:`~ccnet.models.backbone.TinyBackbone`) or any timm model
            supporting ``features_only`` and ``output_stride``.
        output_stride: 8 (D8) or 16 (D16); the tiny backbone has stride 4 whatever this says.
        norm: ``"bn"``, ``"syncbn"`` or a norm class, for the backbone and the heads.
        backbone_weights: ImageNet initialisation of the backbone: None (random), ``"timm"`` (timm's weights),
            ``"open-mmlab"`` (the mmseg ``*_v1c`` files) or a path / URL (mmseg, authors' or timm layout).
        align_corners: of the final bilinear upsampling (True for mmseg's 769x769 models and the authors').
        preprocess: the input normalisation the model expects.
        head: the heads.
        clip_length: video models only (None for image models): L, the frames one 3-D attention window spans.
        frames: video models: predict ``"all"`` frames or the ``"centre"`` one.
    """

    backbone: str
    output_stride: int = 8
    norm: str | type[nn.Module] = "bn"
    backbone_weights: str | None = None
    align_corners: bool = False
    preprocess: Preprocess = IMAGENET_RGB
    head: HeadConfig = field(default_factory=HeadConfig)
    clip_length: int | None = None
    frames: Literal["all", "centre"] = "all"

    def __post_init__(self) -> None:
        if self.clip_length is not None and self.clip_length < 1:
            raise ValueError(f"clip_length must be >= 1, got {self.clip_length}")
        if self.frames not in FRAMES:
            raise ValueError(f"frames must be one of {list(FRAMES)}, got {self.frames!r}")

    @property
    def is_video(self) -> bool:
        return self.clip_length is not None

    def with_overrides(self, **overrides: Any) -> Architecture:
        """A copy with the given fields replaced; :class:`HeadConfig` field names go to ``head``.

        Raises:
            ValueError: a name that is neither a field here nor of :class:`HeadConfig` (valid names listed),
                a video option on an image model, or an invalid value.
        """
        head_fields = {f.name for f in dataclasses.fields(HeadConfig)}
        own_fields = {f.name for f in dataclasses.fields(self)} - {"head"}
        unknown = sorted(set(overrides) - head_fields - own_fields)
        if unknown:
            raise ValueError(
                f"unknown model option(s) {unknown}; valid: {sorted(own_fields | head_fields)}"
            )
        if not self.is_video and {"clip_length", "frames"} & set(overrides):
            raise ValueError("clip_length / frames are options of video models (ccnet3d_*) only")
        head = dataclasses.replace(self.head, **{k: v for k, v in overrides.items() if k in head_fields})
        own = {k: v for k, v in overrides.items() if k in own_fields}
        return dataclasses.replace(self, head=head, **own)
