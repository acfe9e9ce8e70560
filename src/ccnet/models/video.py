"""CCNet for video: a 2-D backbone per frame, 3-D criss-cross attention over the clip (CCNet, TPAMI 2020).

``CCNetVideo(x)`` maps normalised clips (B, T, 3, H, W) to a :class:`SegmentationOutput`: logits of every
frame (B, T, K, H, W) (``frames="all"``) or of the centre frame ``centre_index(T)`` only (B, K, H, W)
(``frames="centre"``); ``aux`` likewise in train mode, else None.

The network is its 2-D twin (``ccnet3d_r50_d8`` <-> ``ccnet_r50_d8`` etc.) with a 3-D context module: the
backbone, the decode head's convolutions and the auxiliary head run frame by frame, while the recurrent
criss-cross attention (:class:`~ccnet.ops.RecurrentCrissCrossAttention3d`) runs on the
(B, C, T, h, w) features of a clip, each position attending to its time line, row and column. The state
dict has the 2-D twin's keys; only the 1x1 query/key/value conv weights of the context module gain a
trailing 1 ((C', C, 1, 1) -> (C', C, 1, 1, 1)), so 2-D weights load after
:func:`ccnet.models.convert.inflate_2d_state_dict` (``create_model(..., pretrained=...)`` does this for zoo
entries and files of the 2-D twin). With T = 1 the video model computes exactly what its 2-D twin computes,
and built from the same random seed the two hold the same weights.

``clip_length`` L is the span of one attention window. Clips of T = n L frames are cut into n windows of
L consecutive frames that are processed independently (predicting every frame only), so a model with
L = 1 segments the frames of any clip one by one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ccnet.clips import centre_index
from ccnet.models.architecture import FRAMES, Architecture
from ccnet.models.ccnet import CCNet, SegmentationOutput, build_parts
from ccnet.preprocess import IMAGENET_RGB, Preprocess

__all__ = ["CCNetVideo", "build_ccnet_video"]


def _shape(x: Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


class CCNetVideo(CCNet):
    """Video segmentation network: per-frame backbone -> decode head with a 3-D context module over the clip
    (+ per-frame auxiliary head while training).

    Args:
        backbone: module mapping images (N, 3, H, W) to ``[stage3, stage4]`` features at stride os, with a
            timm ``feature_info``; applied to every frame.
        head: a :class:`~ccnet.models.heads.ContextHead` whose ``context`` maps (B, C, T, h, w) to the same
            shape (a :class:`~ccnet.ops.RecurrentCrissCrossAttention3d` for CCNet).
        aux_head: stage-3 features (N, C3, h, w) -> logits (N, K, h, w), or None.
        clip_length: L, the number of frames one attention window spans.
        frames: ``"all"`` (logits for every frame) or ``"centre"`` (for frame ``centre_index(L)`` only;
            the input must then have exactly L frames).
        align_corners: of the final bilinear upsampling.
        preprocess: the input normalisation the weights expect.

    Attributes as :class:`~ccnet.models.CCNet`'s; ``pretrained_cfg`` may be the zoo entry of the 2-D twin.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        aux_head: nn.Module | None = None,
        *,
        clip_length: int = 5,
        frames: str = "all",
        align_corners: bool = False,
        preprocess: Preprocess = IMAGENET_RGB,
    ) -> None:
        if clip_length < 1:
            raise ValueError(f"CCNetVideo: clip_length must be >= 1, got {clip_length}")
        _check_frames(frames)
        super().__init__(backbone, head, aux_head, align_corners=align_corners, preprocess=preprocess)
        self.clip_length = clip_length
        self.frames = frames

    def extra_repr(self) -> str:
        return f"clip_length={self.clip_length}, frames={self.frames!r}"

    def _check_input(self, x: Tensor) -> None:
        _check_frames(self.frames)  # the attribute may have been set after construction
        L = self.clip_length
        if x.dim() != 5 or x.shape[2] != 3:
            raise ValueError(f"CCNetVideo: expected normalised clips (B, T, 3, H, W), got shape {_shape(x)}")
        T = x.shape[1]
        if self.frames == "centre" and T != L:
            raise ValueError(
                f"CCNetVideo: frames='centre' needs clips of exactly clip_length={L} frames, got shape "
                f"{_shape(x)} (T={T})"
            )
        if T == 0 or T % L:
            raise ValueError(
                f"CCNetVideo: the number of frames T must be a multiple of clip_length={L}, got shape "
                f"{_shape(x)} (T={T})"
            )

    def decode(self, x: Tensor) -> SegmentationOutput:
        """(B, T, 3, H, W) clips -> logits at feature resolution: ``out`` (B, T, K, h, w), or (B, K, h, w) for
        the centre frame with ``frames="centre"``; ``aux`` the same in train mode, else None."""
        self._check_input(x)
        B, T = x.shape[:2]
        L = self.clip_length
        stage3, stage4 = self.backbone(x.flatten(0, 1))  # (B T, C3, h, w), (B T, C4, h, w)
        y = self.head.conv_in(stage4)  # (B T, C, h, w)
        # Windows of L consecutive frames are separate clips: fold them into the batch.
        volume = y.unflatten(0, (B * T // L, L)).transpose(1, 2)  # (B T/L, C, L, h, w)
        context = self.head.context(volume)  # (B T/L, C, L, h, w)
        if self.frames == "centre":  # T == L: one window per clip; the rest of the heads on one frame
            c = centre_index(T)
            stage3 = stage3.unflatten(0, (B, T))[:, c]  # (B, C3, h, w)
            stage4 = stage4.unflatten(0, (B, T))[:, c]  # (B, C4, h, w)
            context = context[:, :, c]  # (B, C, h, w)
        else:
            context = context.transpose(1, 2).flatten(0, 1)  # (B T, C, h, w)
        out = self.head.classify(stage4, context)  # (B T, K, h, w) or (B, K, h, w)
        aux = self.aux_head(stage3) if self.training and self.aux_head is not None else None
        if self.frames == "all":
            out = out.unflatten(0, (B, T))
            aux = aux.unflatten(0, (B, T)) if aux is not None else None
        return SegmentationOutput(out, aux)

    def forward(self, x: Tensor) -> SegmentationOutput:
        """(B, T, 3, H, W) normalised clips -> logits (B, T, K, H, W), or (B, K, H, W) with
        ``frames="centre"`` (+ ``aux`` of the same shape in train mode)."""
        size = x.shape[-2:]
        out, aux = self.decode(x)
        aux = self._upsample(aux, size) if aux is not None else None
        return SegmentationOutput(self._upsample(out, size), aux)

    def _upsample(self, logits: Tensor, size: torch.Size) -> Tensor:
        """(..., K, h, w) -> (..., K, H, W) bilinearly, any number of leading dims."""
        flat = logits.flatten(0, -4) if logits.dim() > 4 else logits
        flat = F.interpolate(flat, size=size, mode="bilinear", align_corners=self.align_corners)
        return flat.reshape(*logits.shape[:-2], *size)


def _check_frames(frames: str) -> None:
    if frames not in FRAMES:
        raise ValueError(f"CCNetVideo: frames must be one of {list(FRAMES)}, got {frames!r}")


def build_ccnet_video(arch: Architecture, num_classes: int) -> CCNetVideo:
    """A video CCNet as ``arch`` describes, with random weights: the 2-D network with a 3-D context module
    (see :func:`ccnet.models.ccnet.build_parts`)."""
    if arch.clip_length is None:
        raise ValueError("build_ccnet_video: the architecture has no clip_length (an image model)")
    return CCNetVideo(
        *build_parts(arch, num_classes, num_axes=3),
        clip_length=arch.clip_length,
        frames=arch.frames,
        align_corners=arch.align_corners,
        preprocess=arch.preprocess,
    )
