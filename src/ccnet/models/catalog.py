"""Every registered architecture, as data: ``ccnet.list_models()`` lists them, ``ccnet.create_model(name)``
builds one.

- CCNet on dilated ResNets (mmseg's ``ccnet_r50-d8`` etc., the authors' network) and its ablation twins on
  the same backbones: ``fcn_*`` (no context module) and ``nonlocal_*`` (a non-local block in place of RCCA);
- tiny networks (~58k parameters, :class:`~ccnet.models.backbone.TinyBackbone`) for CPU runs, tests and the
  built-in context tasks;
- CE2P with RCCA as its context module (``ce2p_rcca_*``, :mod:`ccnet.models.ce2p`): CCNet's human-parsing
  network on LIP, output stride 16 by default;
- video CCNets (``ccnet3d_*``): the 2-D network with 3-D criss-cross attention over clips, loading the
  weights of the 2-D twin named by ``weights_from``.
"""

from __future__ import annotations

import dataclasses

from ccnet.models.architecture import Architecture, HeadConfig
from ccnet.models.ccnet import build_ccnet
from ccnet.models.ce2p import build_ce2p
from ccnet.models.registry import ModelEntry, register_model
from ccnet.models.video import build_ccnet_video
from ccnet.preprocess import AUTHORS_BGR

__all__ = ["IMAGE_MODELS", "PARSING_MODELS", "VIDEO_MODELS"]

R50_D8 = Architecture(backbone="resnet50_v1c", output_stride=8)
R101_D8 = Architecture(backbone="resnet101_v1c", output_stride=8)
AUTHORS = Architecture(
    backbone="resnet101_ccnet",
    output_stride=8,
    align_corners=True,
    preprocess=AUTHORS_BGR,
    head=HeadConfig(activation="leaky_relu", aux_channels=512),
)
TINY = Architecture(backbone="tiny", head=HeadConfig(channels=32, aux_channels=16))


def _with(base: Architecture, **changes: object) -> Architecture:
    return base.with_overrides(**changes)


# name -> (architecture, description)
IMAGE_MODELS: dict[str, tuple[Architecture, str]] = {
    "ccnet_r50_d8": (R50_D8, "CCNet (RCCA, R=2) on ResNet-50-V1c, output stride 8: mmseg's ccnet_r50-d8"),
    "ccnet_r101_d8": (R101_D8, "CCNet (RCCA, R=2) on ResNet-101-V1c, output stride 8: mmseg's ccnet_r101-d8"),
    "ccnet_r50_d16": (
        _with(R50_D8, output_stride=16),
        "CCNet (RCCA, R=2) on ResNet-50-V1c, output stride 16",
    ),
    "ccnet_r101_d16": (
        _with(R101_D8, output_stride=16),
        "CCNet (RCCA, R=2) on ResNet-101-V1c, output stride 16",
    ),
    "ccnet_r101_d8_authors": (
        AUTHORS,
        "the CCNet authors' network: deep stem 64-64-128, un-contracted dilations, leaky-ReLU heads, "
        "aux 512, BGR mean-only input, align_corners=True; fits convert_checkpoint(..., source='authors')",
    ),
    "fcn_r50_d8": (
        _with(R50_D8, context="none"),
        "ablation baseline: the CCNet head without a context module",
    ),
    "fcn_r101_d8": (_with(R101_D8, context="none"), "ablation baseline on ResNet-101, no context module"),
    "nonlocal_r50_d8": (
        _with(R50_D8, context="nonlocal"),
        "ablation twin: a non-local block in place of RCCA",
    ),
    "nonlocal_r101_d8": (_with(R101_D8, context="nonlocal"), "ablation twin on ResNet-101: non-local block"),
    "ccnet_tiny": (TINY, "tiny CCNet (RCCA, R=2) for CPU runs on the built-in context task"),
    "fcn_tiny": (_with(TINY, context="none"), "ablation twin of ccnet_tiny without a context module"),
    "nonlocal_tiny": (_with(TINY, context="nonlocal"), "ablation twin of ccnet_tiny with a non-local block"),
}

# CE2P + RCCA: align_corners=True everywhere (CE2P's interpolation), output stride 16 (see ccnet.models.ce2p)
CE2P_R101 = Architecture(backbone="resnet101_v1c", output_stride=16, align_corners=True)
PARSING_MODELS: dict[str, tuple[Architecture, str]] = {
    "ce2p_rcca_r101_os16": (
        CE2P_R101,
        "CE2P (edge branch, decoder, fusion) with RCCA (R=2) as context on ResNet-101-V1c, output stride 16: "
        "CCNet's LIP human-parsing network",
    ),
    "ce2p_rcca_r50_os16": (
        _with(CE2P_R101, backbone="resnet50_v1c"),
        "CE2P with RCCA (R=2) as context on ResNet-50-V1c, output stride 16",
    ),
    "ce2p_rcca_tiny": (
        Architecture(backbone="tiny", align_corners=True, head=HeadConfig(channels=32)),
        "tiny CE2P + RCCA (stride 8, 32 channels) for CPU runs and tests",
    ),
}

# video name -> (the 2-D twin it is built like and whose weights it loads, description)
VIDEO_MODELS: dict[str, tuple[str, str]] = {
    "ccnet3d_r50_d8": ("ccnet_r50_d8", "video CCNet (3-D RCCA, R=2) on ResNet-50-V1c, output stride 8"),
    "ccnet3d_r101_d8": ("ccnet_r101_d8", "video CCNet (3-D RCCA, R=2) on ResNet-101-V1c, output stride 8"),
    "ccnet3d_tiny": ("ccnet_tiny", "tiny video CCNet (ccnet_tiny with 3-D RCCA) for CPU runs and tests"),
}
VIDEO_CLIP_LENGTH = 5

for _name, (_architecture, _description) in IMAGE_MODELS.items():
    register_model(ModelEntry(_name, build_ccnet, _architecture, _description))

for _name, (_architecture, _description) in PARSING_MODELS.items():
    register_model(ModelEntry(_name, build_ce2p, _architecture, _description))

for _name, (_twin, _description) in VIDEO_MODELS.items():
    _architecture = dataclasses.replace(IMAGE_MODELS[_twin][0], clip_length=VIDEO_CLIP_LENGTH)
    register_model(ModelEntry(_name, build_ccnet_video, _architecture, _description, weights_from=_twin))
