"""The built-in instance task: the context task's images as instance segmentation, generated on the fly.

Each image is a sample of :mod:`ccnet.data.synthetic`'s context task (a noisy grey background, one colour
marker, 3-5 grey striped squares / discs whose look says nothing about the colour). Instances: every object
and the marker, all of the image's context class ``c`` (1 = red, 2 = green, 3 = blue, the marker's colour).
So an object's *class* depends on a cue far away (``min_marker_distance`` px at least), while its box and
mask are local: a detector without context finds the objects but can only guess their class (about 1/3
right); attention that carries the marker's colour to the objects gets the class right. Mask AP by
COCOeval therefore measures the context module.

Samples follow the instance interface of :mod:`ccnet.data.coco`: ``(image, target)``, the image a
``tv_tensors.Image`` float32 (3, S, S) in [0, 1], the target ``boxes`` (N, 4) XYXY (tight around the
masks), ``labels`` (N,) int64 in 1..3, ``masks`` (N, S, S) uint8, ``image_id``. ``dataset.coco`` holds the
ground truth for COCOeval (built from the generated samples), ``dataset.label_to_category_id`` maps labels to
its category ids (the same numbers).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from ccnet.data.meta import CONTEXT
from ccnet.data.synthetic import ContextConfig, generate_context_clip

__all__ = ["INSTANCE_TASK_CLASSES", "InstanceTaskDataset", "instances_of"]

INSTANCE_TASK_CLASSES = ("__background__", *CONTEXT.classes[1:])  # red, green, blue
_SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
_DEFAULT_LENGTH = {"train": 4096, "val": 64, "test": 64}
_VARIANT = 7  # another stream than the context datasets' (0, 1): other images for the same (seed, index)


def instances_of(label: np.ndarray, info: dict[str, Any], marker_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Instance masks and labels of a context-task sample: one instance per object and one for the marker.

    ``label`` (S, S) int64 (class ``c`` on objects and marker, 0 elsewhere) -> masks (N, S, S) uint8 and
    labels (N,) int64. Objects keep a gap to each other and to the marker, so an object's pixels are the
    labelled pixels inside its box.
    """
    size = label.shape[0]
    boxes = [*info["object_boxes"], (*info["marker_yx"], marker_size)]
    masks = np.zeros((len(boxes), size, size), dtype=np.uint8)
    for k, (top, left, side) in enumerate(boxes):
        window = label[top : top + side, left : left + side]
        masks[k, top : top + side, left : left + side] = window > 0
    masks = masks[masks.reshape(len(boxes), -1).any(axis=1)]
    return masks, np.full(len(masks), info["context_class"], dtype=np.int64)


def _tight_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, S, S) masks -> (N, 4) float32 XYXY boxes around their pixels (x2, y2 exclusive, as COCO's)."""
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for k, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        boxes[k] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return boxes


class InstanceTaskDataset(Dataset):
    """The built-in instance task (see the module docstring).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (independent streams).
        length: number of samples (default 4096 for train, 64 otherwise).
        seed: non-negative; (seed, split, index) fixes a sample.
        flip: random horizontal flips (training), drawn from torch's global generator (seeded per sample by
            the training loader).
        **config: :class:`~ccnet.data.synthetic.ContextConfig` fields (image_size, num_objects, object_size,
            marker_size, min_marker_distance, marker_placement, noise_std).

    Attributes: ``classes`` (background first), ``num_classes`` (4), ``label_to_category_id``, ``coco``
    (the pycocotools ground truth of every sample, built on first use), ``name``.
    """

    name = "instance"
    splits = tuple(_SPLIT_STREAMS)
    extra_options = tuple(f.name for f in dataclasses.fields(ContextConfig))

    def __init__(
        self,
        split: str = "train",
        *,
        length: int | None = None,
        seed: int = 0,
        flip: bool = False,
        **config: Any,
    ) -> None:
        if split not in _SPLIT_STREAMS:
            raise ValueError(f"unknown split {split!r} of the instance task; expected one of {self.splits}")
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        self.split, self.seed = split, int(seed)
        self.length = _DEFAULT_LENGTH[split] if length is None else int(length)
        if self.length < 1:
            raise ValueError(f"length must be >= 1, got {self.length}")
        self.config = ContextConfig(**config)
        self.flip = v2.RandomHorizontalFlip(0.5) if flip else None
        self.classes = INSTANCE_TASK_CLASSES
        self.label_to_category_id = {k: k for k in range(1, len(self.classes))}

    @property
    def num_classes(self) -> int:
        """Classes including background (torchvision's count)."""
        return len(self.classes)

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(split={self.split!r}, length={self.length}, seed={self.seed}, {self.config})"

    def generate(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """``uint8`` image (S, S, 3), masks (N, S, S) uint8, labels (N,) int64 and the layout."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        rng = np.random.default_rng([self.seed, _SPLIT_STREAMS[self.split], index, _VARIANT])
        image, label, info = generate_context_clip(rng, self.config)
        masks, labels = instances_of(label[0], info, self.config.marker_size)
        return image[0], masks, labels, info

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image, masks, labels, _ = self.generate(index)
        size = image.shape[0]
        pixels = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1).float().div_(255))
        target = {
            "boxes": tv_tensors.BoundingBoxes(
                torch.from_numpy(_tight_boxes(masks)), format="XYXY", canvas_size=(size, size)
            ),
            "labels": torch.from_numpy(labels),
            "masks": tv_tensors.Mask(torch.from_numpy(masks)),
            "image_id": index,
        }
        if self.flip is not None:
            pixels, target = self.flip(pixels, target)
        return pixels, target

    @functools.cached_property
    def coco(self) -> Any:
        """The ground truth as a pycocotools ``COCO`` (image ids = indices), for COCOeval."""
        from ccnet.data.coco import coco_ground_truth

        def samples():
            size = self.config.image_size
            for index in range(self.length):
                _, masks, labels, _ = self.generate(index)
                yield (size, size), {"image_id": index, "labels": labels, "masks": masks}

        return coco_ground_truth(samples(), self.classes, self.label_to_category_id)
