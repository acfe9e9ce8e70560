"""Paired image + mask transforms built on ``torchvision.transforms.v2``.

Every pipeline is called as ``image, mask = pipeline(image, mask)`` with

- ``image``: ``tv_tensors.Image`` ``uint8`` ``(3, H, W)`` RGB (or ``(T, 3, H, W)`` for a clip: every frame
  gets the same random parameters),
- ``mask``: ``tv_tensors.Mask`` ``uint8`` ``(H, W)`` (or ``(T, H, W)``), values ``0..K-1`` and 255 = ignore,

and returns a ``float32`` normalised image and a ``uint8`` mask. Geometric steps go through
``v2.functional`` so masks are always resized with nearest interpolation and never gain values, except 255
from padding. Photometric steps and normalisation leave the mask untouched.

Recipes (see ``configs/`` and the project README):

- :func:`train_transforms` (mmsegmentation): keep-ratio resize to ``scale`` x ratio in [0.5, 2.0], random crop
  retried until no class covers more than ``cat_max_ratio`` of it, horizontal flip, photometric distortion,
  normalise with ImageNet mean/std (RGB, 0..255), pad to the crop size with 0 / 255.
- :func:`authors_train_transforms` (the CCNet authors' Cityscapes script): image scaled by a factor drawn from
  {0.7, 0.8, ..., 2.1}, crop, flip, no photometric distortion, BGR mean subtraction without std.
- Every training flip is a :class:`RandomHorizontalFlip` that swaps the dataset's left/right class ids
  (``flip_pairs``, e.g. LIP's arms, legs and shoes) on the mirrored mask; without pairs it is torchvision's
  flip. (mmsegmentation's ``RandomFlip`` does not swap: a mirrored left arm is still labelled "left arm".)
- :func:`eval_transforms`: optional keep-ratio resize of the image (the mask keeps its original size so
  predictions are scored at full resolution), normalise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ccnet.data.meta import IGNORE_INDEX, DatasetMeta, check_flip_pairs
from ccnet.preprocess import AUTHORS_BGR, IMAGENET_RGB, PREPROCESS_NAMES, Preprocess, resolve_preprocess

AUTHORS_SCALES = tuple(round(0.7 + 0.1 * step, 1) for step in range(15))  # 0.7, 0.8, ..., 2.1


def keep_ratio_size(size: Sequence[int], scale: tuple[int, int] | None, ratio: float = 1.0) -> list[int]:
    """Output ``[H, W]`` of a keep-ratio resize of an ``(H, W)`` image.

    ``scale`` is the ``(long side, short side)`` bound (multiplied by ``ratio``); the image is scaled by the
    largest factor that keeps both sides within the bound. ``scale=None`` scales the image by ``ratio``.
    """
    height, width = int(size[0]), int(size[1])
    if scale is None:
        factor = ratio
    else:
        long_side, short_side = scale[0] * ratio, scale[1] * ratio
        factor = min(long_side / max(height, width), short_side / min(height, width))
    return [max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))]


def _image_size(flat_inputs: list[Any]) -> list[int]:
    for inpt in flat_inputs:
        if isinstance(inpt, tv_tensors.Image | tv_tensors.Mask):
            return F.get_size(inpt)
    raise TypeError("expected a tv_tensors.Image or tv_tensors.Mask among the inputs")


class RandomResize(v2.Transform):
    """Keep-ratio resize to ``scale`` x a random ratio (see :func:`keep_ratio_size`).

    The ratio is uniform in ``ratio_range`` or, when ``ratios`` is given, one of ``ratios`` (``ratios=(1.0,)``
    makes the resize deterministic). Masks use nearest interpolation; ``resize_mask=False`` leaves them at
    their original size (evaluation).
    """

    def __init__(
        self,
        scale: tuple[int, int] | None,
        ratio_range: tuple[float, float] | None = (0.5, 2.0),
        ratios: Sequence[float] | None = None,
        resize_mask: bool = True,
    ) -> None:
        super().__init__()
        if (ratio_range is None) == (ratios is None):
            raise ValueError("give exactly one of ratio_range and ratios")
        self.scale = scale
        self.ratio_range = ratio_range
        self.ratios = tuple(ratios) if ratios is not None else None
        self.resize_mask = resize_mask

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if self.ratios is not None:
            ratio = self.ratios[int(torch.randint(len(self.ratios), ()))]
        else:
            low, high = self.ratio_range
            ratio = low + float(torch.rand(())) * (high - low)
        return {"size": keep_ratio_size(_image_size(flat_inputs), self.scale, ratio)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask) and not self.resize_mask:
            return inpt
        return self._call_kernel(F.resize, inpt, params["size"], antialias=True)


class CatMaxRatioRandomCrop(v2.Transform):
    """Random ``(H, W)`` crop, retried until no single class covers more than ``cat_max_ratio`` of it.

    Class shares are computed over the crop's labelled pixels (``ignore_index`` excluded) and, as in
    mmsegmentation, a crop must hold at least two classes to be accepted. After ``max_attempts`` rejected
    crops the last one is used. Images smaller than the crop are cropped to their own size (pad afterwards).
    """

    def __init__(
        self,
        size: tuple[int, int],
        cat_max_ratio: float = 0.75,
        ignore_index: int = IGNORE_INDEX,
        max_attempts: int = 10,
    ) -> None:
        super().__init__()
        self.size = (int(size[0]), int(size[1]))
        self.cat_max_ratio = cat_max_ratio
        self.ignore_index = ignore_index
        self.max_attempts = max_attempts

    def _acceptable(self, crop: torch.Tensor) -> bool:
        counts = torch.bincount(crop.reshape(-1).to(torch.int64), minlength=256)
        counts[self.ignore_index] = 0
        counts = counts[counts > 0]
        return len(counts) > 1 and float(counts.max()) / float(counts.sum()) < self.cat_max_ratio

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = _image_size(flat_inputs)
        crop_h, crop_w = min(self.size[0], height), min(self.size[1], width)
        masks = [inpt for inpt in flat_inputs if isinstance(inpt, tv_tensors.Mask)]
        check = bool(masks) and self.cat_max_ratio < 1.0
        for _ in range(self.max_attempts if check else 1):
            top = int(torch.randint(height - crop_h + 1, ()))
            left = int(torch.randint(width - crop_w + 1, ()))
            if check and self._acceptable(masks[0][..., top : top + crop_h, left : left + crop_w]):
                break
        return {"top": top, "left": left, "height": crop_h, "width": crop_w}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.crop, inpt, **params)


class PadToSize(v2.Transform):
    """Pad bottom/right up to ``(H, W)``: images with ``image_fill``, masks with ``mask_fill`` (ignore)."""

    def __init__(self, size: tuple[int, int], image_fill: float = 0.0, mask_fill: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.size = (int(size[0]), int(size[1]))
        self.image_fill = image_fill
        self.mask_fill = mask_fill

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        height, width = F.get_size(inpt)
        pad_h, pad_w = max(0, self.size[0] - height), max(0, self.size[1] - width)
        if pad_h == 0 and pad_w == 0:
            return inpt
        fill = self.mask_fill if isinstance(inpt, tv_tensors.Mask) else self.image_fill
        return self._call_kernel(F.pad, inpt, padding=[0, 0, pad_w, pad_h], fill=fill)


class RandomHorizontalFlip(v2.RandomHorizontalFlip):
    """Horizontal flip with probability ``p`` that also swaps the mirrored classes of the mask.

    A flipped left arm is a right arm: each ``(a, b)`` of ``flip_pairs`` turns label ``a`` into ``b`` and
    ``b`` into ``a`` on flipped masks (255 and the other ids unchanged); images are only flipped.
    """

    def __init__(self, p: float = 0.5, flip_pairs: Sequence[Sequence[int]] = ()) -> None:
        super().__init__(p=p)
        self.flip_pairs = check_flip_pairs(flip_pairs, IGNORE_INDEX)
        lookup = torch.arange(256, dtype=torch.uint8)
        for a, b in self.flip_pairs:
            lookup[a], lookup[b] = b, a
        self._lookup = lookup  # stored value -> value after the flip

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        flipped = super().transform(inpt, params)
        if not self.flip_pairs or not isinstance(flipped, tv_tensors.Mask):
            return flipped
        if flipped.dtype != torch.uint8:
            raise TypeError(f"RandomHorizontalFlip: masks must be uint8 to swap pairs, got {flipped.dtype}")
        return tv_tensors.wrap(self._lookup[flipped.as_subclass(torch.Tensor).long()], like=flipped)

    def extra_repr(self) -> str:
        return f"p={self.p}, flip_pairs={self.flip_pairs}"


class RGBToBGR(v2.Transform):
    """Reverse the channel order of images (``(..., 3, H, W)``); masks pass through."""

    _transformed_types = (tv_tensors.Image,)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return tv_tensors.wrap(inpt.flip(-3), like=inpt)


def photometric_distortion(
    brightness: float = 0.125, contrast: float = 0.5, saturation: float = 0.5, hue: float = 0.1
) -> v2.Transform:
    """Brightness, contrast, saturation and hue jitter, each applied with p=0.5, in a random order.

    The defaults are mmsegmentation's ranges expressed as torchvision factors (contrast and saturation in
    [0.5, 1.5], a hue shift of up to 18/180 of the circle); brightness is multiplicative here (+-12.5%) where
    mmsegmentation adds +-32 grey levels. Channels are never permuted (colour can be the class cue).
    """
    jitters = [
        v2.ColorJitter(brightness=brightness),
        v2.ColorJitter(contrast=contrast),
        v2.ColorJitter(saturation=saturation),
        v2.ColorJitter(hue=hue),
    ]
    return v2.RandomOrder([v2.RandomApply([jitter], p=0.5) for jitter in jitters])


def normalize_transforms(normalization: Preprocess | str = IMAGENET_RGB) -> list[v2.Transform]:
    """``uint8`` image -> ``float32`` normalised by a :class:`~ccnet.preprocess.Preprocess` or its name:
    ``"mmseg"`` (RGB, ImageNet mean/std) or ``"authors"`` (BGR, Caffe mean, no std)."""
    preprocess = resolve_preprocess(normalization)
    steps: list[v2.Transform] = [v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=False)]
    if preprocess.bgr:
        steps.append(RGBToBGR())
    return [*steps, v2.Normalize(preprocess.mean, preprocess.std)]


def train_transforms(
    crop_size: tuple[int, int],
    *,
    scale: tuple[int, int] | None = None,
    ratio_range: tuple[float, float] = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    flip_prob: float = 0.5,
    photometric: bool = True,
    normalization: Preprocess | str = IMAGENET_RGB,
    ignore_index: int = IGNORE_INDEX,
    flip_pairs: Sequence[Sequence[int]] = (),
) -> v2.Compose:
    """The mmsegmentation training pipeline; output image ``float32`` ``(3, *crop_size)``, mask the same size.

    ``scale`` is the ``(long side, short side)`` base scale (``None`` = the image's own size);
    ``flip_pairs``: the dataset's left/right class pairs, swapped on flipped masks (``meta.flip_pairs``).
    """
    steps: list[v2.Transform] = [
        RandomResize(scale, ratio_range=ratio_range),
        CatMaxRatioRandomCrop(crop_size, cat_max_ratio=cat_max_ratio, ignore_index=ignore_index),
        RandomHorizontalFlip(p=flip_prob, flip_pairs=flip_pairs),
    ]
    if photometric:
        steps.append(photometric_distortion())
    steps += normalize_transforms(normalization)
    steps.append(PadToSize(crop_size, image_fill=0.0, mask_fill=ignore_index))
    return v2.Compose(steps)


def authors_train_transforms(
    crop_size: tuple[int, int],
    *,
    scales: Sequence[float] = AUTHORS_SCALES,
    flip_prob: float = 0.5,
    ignore_index: int = IGNORE_INDEX,
    flip_pairs: Sequence[Sequence[int]] = (),
) -> v2.Compose:
    """The CCNet authors' pipeline: image x a factor from ``scales``, random crop, flip (swapping
    ``flip_pairs`` on the mask), BGR mean-only."""
    return v2.Compose(
        [
            RandomResize(None, ratio_range=None, ratios=scales),
            CatMaxRatioRandomCrop(crop_size, cat_max_ratio=1.0, ignore_index=ignore_index),
            RandomHorizontalFlip(p=flip_prob, flip_pairs=flip_pairs),
            *normalize_transforms(AUTHORS_BGR),
            PadToSize(crop_size, image_fill=0.0, mask_fill=ignore_index),
        ]
    )


def eval_transforms(
    scale: tuple[int, int] | None = None,
    *,
    normalization: Preprocess | str = IMAGENET_RGB,
    resize_mask: bool = False,
) -> v2.Compose:
    """Keep-ratio resize of the image to ``scale`` (``None``: no resize), then normalise.

    The mask keeps its original size unless ``resize_mask``; the dataset item's ``meta["ori_size"]`` holds the
    original ``(H, W)`` for mapping predictions back.
    """
    steps: list[v2.Transform] = []
    if scale is not None:
        steps.append(RandomResize(scale, ratio_range=None, ratios=(1.0,), resize_mask=resize_mask))
    steps += normalize_transforms(normalization)
    return v2.Compose(steps)


def default_transforms(meta: DatasetMeta, *, train: bool, recipe: str = "mmseg") -> v2.Compose:
    """The recipe pipeline for a dataset, using its default scales and crop size.

    ``recipe``: ``"mmseg"`` or ``"authors"`` (the latter also normalises evaluation images the BGR way).
    """
    if recipe not in PREPROCESS_NAMES:
        raise ValueError(f"unknown recipe {recipe!r}; expected one of {tuple(PREPROCESS_NAMES)}")
    if not train:
        return eval_transforms(meta.test_scale, normalization=recipe)
    if recipe == "authors":
        return authors_train_transforms(
            meta.crop_size, ignore_index=meta.ignore_index, flip_pairs=meta.flip_pairs
        )
    return train_transforms(
        meta.crop_size, scale=meta.train_scale, ignore_index=meta.ignore_index, flip_pairs=meta.flip_pairs
    )
