"""The model zoo: every published CCNet checkpoint, with what is needed to build, run and score it.

Names are ``<source>:<run name>``: ``mmseg:ccnet_r50-d8_769x769_80k_cityscapes`` (the mmsegmentation
config name) or ``ssseg:ccnet_resnet50os8_cityscapes`` (the SSSegmentation config name). Each entry says
which registered architecture it fits (``arch``) and the overrides that architecture needs
(``model_kwargs``: aux channels 256 in mmseg / 512 in SSSeg, ``align_corners``), the input preprocessing,
the evaluation protocol (whole image at ``test_scale`` or sliding window) and the reported mIoU.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from ccnet.preprocess import IMAGENET_RGB, Preprocess

__all__ = [
    "IMAGENET_WEIGHTS",
    "ZOO",
    "WeightsEntry",
    "get_weights",
    "list_weights",
]


@dataclass(frozen=True)
class WeightsEntry:
    """One published checkpoint.

    Attributes:
        name: ``source:run`` zoo name.
        arch: registered architecture (``create_model`` name) the weights fit.
        source: checkpoint layout, a ``convert_checkpoint`` source (``mmseg``, ``ssseg``).
        url: download address; ``mirrors`` are tried after it.
        dataset: ``cityscapes``, ``ade20k`` or ``voc12aug``.
        num_classes: K.
        crop_size: training crop (h, w).
        iters: training iterations (mmseg) or None.
        test_mode: ``"whole"`` or ``"slide"`` (sliding window of ``crop_size`` with ``test_stride``).
        test_scale: keep-ratio test resize (long, short) edge limits, or None.
        model_kwargs: ``create_model`` overrides the weights need (``align_corners``, ``aux_channels``).
        preprocess: input normalisation.
        miou: reported single-scale val mIoU (%); ``miou_ms_flip`` with multi-scale + flip (or None).
    """

    name: str
    arch: str
    source: str
    url: str
    dataset: str
    num_classes: int
    crop_size: tuple[int, int]
    iters: int | None
    test_mode: str
    test_scale: tuple[int, int] | None
    model_kwargs: dict[str, Any]
    miou: float
    miou_ms_flip: float | None = None
    test_stride: tuple[int, int] | None = None
    preprocess: Preprocess = IMAGENET_RGB
    mirrors: tuple[str, ...] = field(default=())

    @property
    def align_corners(self) -> bool:
        return bool(self.model_kwargs.get("align_corners", False))


_NUM_CLASSES = {"cityscapes": 19, "ade20k": 150, "voc12aug": 21}
# mmseg/SSSeg test pipelines: keep-ratio resize within (long edge, short edge).
_TEST_SCALE = {"cityscapes": (2048, 1024), "ade20k": (2048, 512), "voc12aug": (2048, 512)}

_MMSEG_PREFIX = "https://download.openmmlab.com/mmsegmentation/v0.5/ccnet/"
# (depth, crop, iterations, dataset, mIoU, mIoU ms+flip, file stamp)
_MMSEG_ROWS = [
    (50, "512x1024", "40k", "cityscapes", 77.76, 78.87, "20200616_142517-4123f401"),
    (101, "512x1024", "40k", "cityscapes", 76.35, 78.19, "20200616_142540-a3b84ba6"),
    (50, "769x769", "40k", "cityscapes", 78.46, 79.93, "20200616_145125-76d11884"),
    (101, "769x769", "40k", "cityscapes", 76.94, 78.62, "20200617_101428-4f57c8d0"),
    (50, "512x1024", "80k", "cityscapes", 79.03, 80.16, "20200617_010421-869a3423"),
    (101, "512x1024", "80k", "cityscapes", 78.87, 79.90, "20200617_203935-ffae8917"),
    (50, "769x769", "80k", "cityscapes", 79.29, 81.08, "20200617_010421-73eed8ca"),
    (101, "769x769", "80k", "cityscapes", 79.45, 80.66, "20200618_011502-ad3cd481"),
    (50, "512x512", "80k", "ade20k", 41.78, 42.98, "20200615_014848-aa37f61e"),
    (101, "512x512", "80k", "ade20k", 43.97, 45.13, "20200615_014848-1f4929a3"),
    (50, "512x512", "160k", "ade20k", 42.08, 43.13, "20200616_084435-7c97193b"),
    (101, "512x512", "160k", "ade20k", 43.71, 45.04, "20200616_000644-e849e007"),
    (50, "512x512", "20k", "voc12aug", 76.17, 77.51, "20200617_193212-fad81784"),
    (101, "512x512", "20k", "voc12aug", 77.27, 79.02, "20200617_193212-0007b61d"),
    (50, "512x512", "40k", "voc12aug", 75.96, 77.04, "20200613_232127-c2a15f02"),
    (101, "512x512", "40k", "voc12aug", 77.87, 78.90, "20200613_232127-c30da577"),
]

_SSSEG_PREFIX = "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_ccnet/"
# dataset -> mIoU for (R-50-D8, R-50-D16, R-101-D8, R-101-D16)
_SSSEG_MIOU = {
    "voc": (77.43, 76.01, 78.02, 77.33),
    "ade20k": (42.47, 40.78, 44.00, 42.95),
    "cityscapes": (79.15, 77.94, 80.08, 78.45),
}
_SSSEG_DATASET = {"voc": "voc12aug", "ade20k": "ade20k", "cityscapes": "cityscapes"}
_SSSEG_CROP = {"voc": (512, 512), "ade20k": (512, 512), "cityscapes": (512, 1024)}


def _mmseg_entries() -> list[WeightsEntry]:
    entries = []
    for depth, crop, iters, dataset, miou, miou_ms, stamp in _MMSEG_ROWS:
        run = f"ccnet_r{depth}-d8_{crop}_{iters}_{dataset}"
        h, w = (int(v) for v in crop.split("x"))
        slide = crop == "769x769"  # the 769x769 Cityscapes models: align_corners, sliding window 769/513
        entries.append(
            WeightsEntry(
                name=f"mmseg:{run}",
                arch=f"ccnet_r{depth}_d8",
                source="mmseg",
                url=f"{_MMSEG_PREFIX}{run}/{run}_{stamp}.pth",
                dataset=dataset,
                num_classes=_NUM_CLASSES[dataset],
                crop_size=(h, w),
                iters=int(iters[:-1]) * 1000,
                test_mode="slide" if slide else "whole",
                test_stride=(513, 513) if slide else None,
                test_scale=_TEST_SCALE[dataset],
                model_kwargs={"aux_channels": 256, "align_corners": slide},
                miou=miou,
                miou_ms_flip=miou_ms,
            )
        )
    return entries


def _ssseg_entries() -> list[WeightsEntry]:
    entries = []
    for short, mious in _SSSEG_MIOU.items():
        for (depth, stride), miou in zip([(50, 8), (50, 16), (101, 8), (101, 16)], mious, strict=True):
            run = f"ccnet_resnet{depth}os{stride}_{short}"
            dataset = _SSSEG_DATASET[short]
            entries.append(
                WeightsEntry(
                    name=f"ssseg:{run}",
                    arch=f"ccnet_r{depth}_d{stride}",
                    source="ssseg",
                    url=f"{_SSSEG_PREFIX}{run}_train.pth",
                    mirrors=(f"{_SSSEG_PREFIX}{run}.pth",),  # the name newer SSSeg docs link to
                    dataset=dataset,
                    num_classes=_NUM_CLASSES[dataset],
                    crop_size=_SSSEG_CROP[short],
                    iters=None,
                    test_mode="whole",
                    test_scale=_TEST_SCALE[dataset],
                    model_kwargs={"aux_channels": 512, "align_corners": False},
                    miou=miou,
                )
            )
    return entries


ZOO: dict[str, WeightsEntry] = {entry.name: entry for entry in [*_mmseg_entries(), *_ssseg_entries()]}

# ImageNet weights of the backbones, in mmseg layout (``stem.*``, ``layer*``, ``fc.*``).
IMAGENET_WEIGHTS: dict[str, str] = {
    "resnet50_v1c": "https://download.openmmlab.com/pretrain/third_party/resnet50_v1c-2cccc1ad.pth",
    "resnet101_v1c": "https://download.openmmlab.com/pretrain/third_party/resnet101_v1c-e67eebb6.pth",
}


def list_weights(pattern: str = "*") -> list[str]:
    """Sorted zoo names matching a shell-style ``pattern`` (e.g. ``"mmseg:*cityscapes"``)."""
    import fnmatch

    return sorted(name for name in ZOO if fnmatch.fnmatch(name, pattern))


def get_weights(name: str) -> WeightsEntry:
    """The zoo entry ``name``; an unknown name raises ValueError listing close names."""
    try:
        return ZOO[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(ZOO), n=5, cutoff=0.5)
        raise ValueError(
            f"unknown zoo weights {name!r}; close names: {close} (see ccnet.list_weights())"
        ) from None
