"""Input normalisation: the one type shared by the model zoo, the data transforms and inference.

A model expects images normalised the way its weights were trained: ``(pixel - mean) / std`` per channel on
0..255 values, in RGB or (the CCNet authors' Caffe-style code) BGR channel order. The model carries its
:class:`Preprocess` (``model.preprocess``), zoo entries name theirs, the training transforms apply it
(:func:`ccnet.data.normalize_transforms`) and :class:`ccnet.engine.inference.Segmenter` applies it to raw
images.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["AUTHORS_BGR", "IMAGENET_RGB", "PREPROCESS_NAMES", "Preprocess", "resolve_preprocess"]


@dataclass(frozen=True)
class Preprocess:
    """Input normalisation of a checkpoint family: ``(pixel - mean) / std`` per channel on 0..255 values, in
    BGR channel order when ``bgr`` (``mean`` and ``std`` are then given in BGR order too)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    bgr: bool = False

    def __call__(self, images: Tensor) -> Tensor:
        """(..., 3, H, W) float RGB images on 0..255 -> normalised, in the model's channel order."""
        if self.bgr:
            images = images.flip(-3)
        mean = images.new_tensor(self.mean).view(3, 1, 1)
        std = images.new_tensor(self.std).view(3, 1, 1)
        return (images - mean) / std


# mmsegmentation, SSSegmentation and torchvision-style ImageNet statistics, RGB.
IMAGENET_RGB = Preprocess(mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))
# The CCNet authors' code: BGR, mean subtraction only.
AUTHORS_BGR = Preprocess(mean=(104.008, 116.669, 122.679), std=(1.0, 1.0, 1.0), bgr=True)

# The names the data pipelines use for them ("mmseg" recipes, the authors' recipe).
PREPROCESS_NAMES: dict[str, Preprocess] = {"mmseg": IMAGENET_RGB, "authors": AUTHORS_BGR}


def resolve_preprocess(preprocess: Preprocess | str) -> Preprocess:
    """A :class:`Preprocess`, or its name in :data:`PREPROCESS_NAMES`; an unknown name raises ValueError."""
    if isinstance(preprocess, Preprocess):
        return preprocess
    try:
        return PREPROCESS_NAMES[preprocess]
    except KeyError:
        raise ValueError(
            f"unknown normalization {preprocess!r}; expected one of {tuple(PREPROCESS_NAMES)} or a Preprocess"
        ) from None
