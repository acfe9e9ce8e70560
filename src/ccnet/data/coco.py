"""COCO-format instance segmentation data: the dataset, its transforms, collate and ``ccnet data check coco``.

An instance sample is ``(image, target)``:

- ``image``: ``tv_tensors.Image`` ``float32`` ``(3, H, W)`` RGB in [0, 1], not normalised (torchvision's
  ``GeneralizedRCNNTransform`` inside the detection model normalises and resizes);
- ``target``: ``{"boxes": tv_tensors.BoundingBoxes XYXY float32 (N, 4), "labels": int64 (N,) in 1..K
  (0 = background), "masks": tv_tensors.Mask uint8 (N, H, W), "image_id": int}``.

Crowd regions (``iscrowd=1``) are not in the target: COCOeval ignores them through the ground truth that
``dataset.coco`` (a pycocotools ``COCO``) keeps. Category ids map to contiguous labels in the order of their
ids (``dataset.label_to_category_id`` and back), or, with ``category_ids_as_labels=True``, label = category
id as torchvision's published COCO weights predict them (91 classes, ``"N/A"`` for the unused ids).

Layouts: COCO 2017 (``ROOT/annotations/instances_{train,val}2017.json``, ``ROOT/{train,val}2017/``; split
``test-dev``: ``image_info_test-dev2017.json`` without annotations and ``test2017/``) through
:func:`coco_dataset` ``(root, split)``, and any COCO-format set through ``coco_dataset(ann_file=...,
image_dir=...)``. Polygons, uncompressed RLE (``counts`` a list) and compressed RLE (``counts`` a string)
are read. Bad input raises :class:`~ccnet.data.files.DatasetError` naming the annotation file or image file
and the image id: bad JSON, missing images, degenerate boxes, boxes or masks outside the image.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from tqdm import tqdm

from ccnet.data.files import DatasetError, read_image

__all__ = [
    "BACKGROUND",
    "COCO_SPLITS",
    "DEGENERATE_POLICIES",
    "CocoCheckReport",
    "CocoInstanceDataset",
    "InstanceTransform",
    "check_coco",
    "coco_dataset",
    "coco_ground_truth",
    "collate_instances",
    "format_coco_report",
    "instance_eval_transforms",
    "instance_train_transforms",
    "official_paths",
    "require_pycocotools",
]

BACKGROUND = "__background__"
COCO_SPLITS = ("train", "val", "test-dev")

DEGENERATE = "degenerate box"
# Zero-size boxes are defects of the official files too: instances_train2017.json holds two boxes of height 0
# (image ids 200365 and 550395; cocodataset/cocoapi#355). torchvision's references, detectron2 and mmdet
# drop such annotations; so does this dataset by default, saying so, rather than refusing COCO itself.
DEGENERATE_POLICIES = ("drop", "error")

# Boxes and polygon points may overshoot the image by rounding (annotation tools store floats); more than
# this many pixels is an annotation that does not belong to the image.
OUTSIDE_TOLERANCE = 1.0

log = logging.getLogger(__name__)

InstanceTransform = Callable[[tv_tensors.Image, dict[str, Any]], tuple[torch.Tensor, dict[str, Any]]]


# ---------------------------------------------------------------------------------------------------------
# transforms


def instance_train_transforms(
    min_size: int | Sequence[int] = 800, max_size: int = 1333, flip_prob: float = 0.5
) -> InstanceTransform:
    """The Mask R-CNN 1x recipe: horizontal flip, shorter side ``min_size`` (one drawn per image when a
    list: the multi-scale option) with the longer side at most ``max_size``, then boxes clamped to the
    image and boxes under 1 pixel dropped with their labels and masks (``v2.SanitizeBoundingBoxes``)."""
    sizes = [min_size] if isinstance(min_size, int) else list(min_size)
    if not sizes or any(s < 1 for s in sizes) or max_size < 1:
        raise ValueError(f"min_size {min_size} and max_size {max_size} must be positive sizes")
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(flip_prob),
            v2.RandomShortestSize(sizes, max_size=max_size),
            v2.ClampBoundingBoxes(),
            v2.SanitizeBoundingBoxes(min_size=1),
        ]
    )


def instance_eval_transforms(min_size: int | None = None, max_size: int = 1333) -> InstanceTransform:
    """Evaluation: nothing by default (the detection model resizes and maps its output back to the input
    size); with ``min_size`` the image is resized like in training (evaluation maps the detections back to
    the original size, see :mod:`ccnet.engine.coco_eval`)."""
    if min_size is None:
        return v2.Identity()
    return v2.RandomShortestSize([min_size], max_size=max_size)


def collate_instances(batch: Sequence[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[list, list]:
    """``[(image, target), ...]`` -> ``([image, ...], [target, ...])``: images of different sizes stay a
    list, as torchvision's detection models take them."""
    images = [image for image, _ in batch]
    targets = [target for _, target in batch]
    return images, targets


# ---------------------------------------------------------------------------------------------------------
# annotation file


@dataclass(frozen=True)
class _Problem:
    file: str
    image_id: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}" + (f" (image id {self.image_id})" if self.image_id is not None else "")
        return f"{where}: {self.reason}"


def _load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetError(f"annotation file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except json.JSONDecodeError as error:
        raise DatasetError(
            f"annotation file {path} is not valid JSON: line {error.lineno} column {error.colno}: {error.msg}"
        ) from error
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"annotation file {path} cannot be read: {error}") from error
    if not isinstance(data, dict):
        raise DatasetError(f"annotation file {path}: expected a JSON object, got {type(data).__name__}")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"annotation file {path}: no {key!r} list (not a COCO instances file)")
    if not isinstance(data.get("annotations", []), list):
        raise DatasetError(f"annotation file {path}: 'annotations' is not a list")
    return data


def _check_images_and_categories(path: Path, data: dict[str, Any]) -> None:
    for n, image in enumerate(data["images"]):
        if not isinstance(image, dict):
            raise DatasetError(f"annotation file {path}: image #{n} is not an object: {image!r:.80}")
        missing = [k for k in ("id", "file_name", "height", "width") if k not in image]
        if missing:
            raise DatasetError(f"annotation file {path}: image #{n} has no {', '.join(map(repr, missing))}")
        if (
            not (isinstance(image["height"], int) and isinstance(image["width"], int))
            or min(image["height"], image["width"]) < 1
        ):
            raise DatasetError(
                f"annotation file {path}: image id {image['id']} ({image['file_name']}) has size "
                f"{image['height']}x{image['width']}; height and width must be positive integers"
            )
    ids = [image["id"] for image in data["images"]]
    if len(set(ids)) != len(ids):
        twice = sorted((k for k, n in Counter(ids).items() if n > 1), key=str)[:5]
        raise DatasetError(f"annotation file {path}: image ids {twice} appear more than once")
    for n, category in enumerate(data["categories"]):
        if not isinstance(category.get("id"), int) or category["id"] < 1 or "name" not in category:
            raise DatasetError(
                f"annotation file {path}: category #{n} {category} needs an integer 'id' >= 1 and a 'name'"
            )
    category_ids = [c["id"] for c in data["categories"]]
    if len(set(category_ids)) != len(category_ids):
        raise DatasetError(f"annotation file {path}: category ids {category_ids} repeat")
    if not category_ids:
        raise DatasetError(f"annotation file {path}: no categories")
    # pycocotools indexes annotations by these keys (and matches detections by annotation id)
    for n, annotation in enumerate(data.get("annotations", [])):
        if not isinstance(annotation, dict) or any(
            k not in annotation for k in ("id", "image_id", "category_id")
        ):
            raise DatasetError(
                f"annotation file {path}: annotation #{n} needs an 'id', an 'image_id' and a 'category_id': "
                f"{annotation!r:.120}"
            )
    annotation_ids = [a["id"] for a in data.get("annotations", [])]
    if len(set(annotation_ids)) != len(annotation_ids):
        twice = sorted((k for k, n in Counter(annotation_ids).items() if n > 1), key=str)[:5]
        raise DatasetError(f"annotation file {path}: annotation ids {twice} appear more than once")


def _annotation_problem(annotation: dict[str, Any], height: int, width: int) -> str | None:
    """What is wrong with one annotation of an image ``height`` x ``width`` (None if nothing)."""
    name = f"annotation id {annotation.get('id')}"
    bbox = annotation.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
        return f"{name}: bbox {bbox!r} is not [x, y, width, height]"
    x, y, w, h = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return f"{name}: bbox {bbox} is not finite"
    if w < 0 or h < 0:
        return f"{name}: box {bbox} has a negative width or height"
    if w == 0 or h == 0:
        return f"{name}: {DEGENERATE} {bbox} (zero width or height)"
    tol = OUTSIDE_TOLERANCE
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        return f"{name}: box {bbox} lies outside the {height}x{width} image"
    segmentation = annotation.get("segmentation")
    if isinstance(segmentation, list):
        if not segmentation:
            return f"{name}: empty polygon list"
        for polygon in segmentation:
            if not (isinstance(polygon, list) and len(polygon) >= 6 and len(polygon) % 2 == 0):
                return f"{name}: a polygon needs an even number >= 6 of coordinates, got {polygon!r:.80}"
            xs, ys = polygon[0::2], polygon[1::2]
            if min(xs) < -tol or min(ys) < -tol or max(xs) > width + tol or max(ys) > height + tol:
                return f"{name}: polygon mask lies outside the {height}x{width} image"
    elif isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if size != [height, width]:
            return f"{name}: RLE mask of size {size} does not match the {height}x{width} image"
        if isinstance(counts, list):
            if sum(counts) != height * width:
                return f"{name}: uncompressed RLE counts sum to {sum(counts)}, not {height}x{width}"
        elif not isinstance(counts, str):
            return f"{name}: RLE counts must be a list or a string, got {type(counts).__name__}"
    else:
        return f"{name}: no 'segmentation' (polygons or RLE)"
    return None


def _decode_mask(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    """COCO segmentation (polygons, uncompressed or compressed RLE) -> ``uint8`` ``(height, width)``."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    with warnings.catch_warnings():  # pycocotools' Cython decoder under numpy 2: noise, not a problem
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return mask_utils.decode(rle)


def require_pycocotools() -> None:
    """Raise a clear ImportError when the optional pycocotools (the ``coco`` extra) is missing."""
    try:
        import pycocotools  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "COCO data and evaluation need pycocotools: pip install 'ccnet[coco]' (or pycocotools)"
        ) from error


def _quiet_coco(data: dict[str, Any]):
    """A pycocotools ``COCO`` over already loaded ``data`` (pycocotools prints while indexing)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


# ---------------------------------------------------------------------------------------------------------
# dataset


class CocoInstanceDataset(Dataset):
    """Images and instance targets of a COCO-format annotation file (see the module docstring).

    Args:
        ann_file: the instances JSON.
        image_dir: the folder the images' ``file_name`` are relative to.
        transforms: ``image, target = transforms(image, target)`` (torchvision.transforms.v2); ``None``
            keeps the images as they are.
        drop_empty: leave out images without a usable (non-crowd) instance, as torchvision's training
            references do; evaluation keeps them (their false positives count).
        category_ids_as_labels: label = category id (torchvision's published COCO weights, 91 classes)
            instead of contiguous labels 1..K.
        degenerate_boxes: ``"drop"``: annotations with a zero-size box (a line or a point) are left out of
            the targets with a warning (listed in ``dropped``; the official train2017 file has two);
            ``"error"``: they are problems like the others.
        strict: raise on the first problems of the file (missing images, bad annotations); ``False`` leaves
            the images concerned out and lists them in ``problems`` (``ccnet data check coco``).

    Attributes:
        coco: pycocotools ``COCO`` holding the ground truth (crowd regions included).
        classes: ``("__background__", name of label 1, ...)``; ``num_classes = len(classes)``.
        label_to_category_id / category_id_to_label: the two directions of the label mapping.
        image_ids: the image ids of the samples, in order.
        problems: ``(file, image id, reason)`` of each image left out (``strict=False`` only).
        dropped: ``(file, image id, reason)`` of each annotation left out for its zero-size box.
    """

    def __init__(
        self,
        ann_file: str | Path,
        image_dir: str | Path,
        transforms: InstanceTransform | None = None,
        *,
        drop_empty: bool = False,
        category_ids_as_labels: bool = False,
        degenerate_boxes: Literal["drop", "error"] = "drop",
        strict: bool = True,
        name: str = "coco",
    ) -> None:
        if degenerate_boxes not in DEGENERATE_POLICIES:
            raise ValueError(
                f"degenerate_boxes must be one of {DEGENERATE_POLICIES}, got {degenerate_boxes!r}"
            )
        require_pycocotools()
        self.ann_file, self.image_dir = Path(ann_file), Path(image_dir)
        self.transforms, self.name = transforms, name
        if not self.image_dir.is_dir():
            raise DatasetError(f"image folder {self.image_dir} does not exist")
        data = _load_json(self.ann_file)
        _check_images_and_categories(self.ann_file, data)
        data.setdefault("annotations", [])  # test-dev's image_info files have none
        self.coco = _quiet_coco(data)

        category_ids = sorted(self.coco.cats)
        names = {c: str(self.coco.cats[c]["name"]) for c in category_ids}
        if category_ids_as_labels:
            self.label_to_category_id = {c: c for c in category_ids}
            self.classes = (BACKGROUND, *(names.get(k, "N/A") for k in range(1, category_ids[-1] + 1)))
        else:
            self.label_to_category_id = {k + 1: c for k, c in enumerate(category_ids)}
            self.classes = (BACKGROUND, *(names[c] for c in category_ids))
        self.category_id_to_label = {c: k for k, c in self.label_to_category_id.items()}

        self.problems: list[tuple[str, int | None, str]] = []
        self.dropped: list[tuple[str, int, str]] = []  # zero-size boxes left out of the targets
        self.num_annotations = Counter()  # "instances", "crowd"
        self.empty_images = 0
        self.image_ids: list[int] = []
        self._dropped_ids: set[int] = set()  # annotation ids
        self._check_annotations(data, strict, degenerate_boxes)
        for image_id in sorted(self.coco.imgs):
            if image_id in self._bad_ids:
                continue
            usable = self._instances(image_id)
            self.empty_images += not usable
            if drop_empty and not usable:
                continue
            self.image_ids.append(image_id)

    def _instances(self, image_id: int) -> list[dict[str, Any]]:
        """The annotations of ``image_id`` that become targets: not crowd, not dropped."""
        return [
            a
            for a in self.coco.imgToAnns[image_id]
            if not a.get("iscrowd", 0) and a.get("id") not in self._dropped_ids
        ]

    def _check_annotations(self, data: dict[str, Any], strict: bool, degenerate_boxes: str) -> None:
        problems: list[_Problem] = []
        for image_id, image in self.coco.imgs.items():
            path = self.image_dir / image["file_name"]
            if not path.is_file():
                problems.append(_Problem(str(path), image_id, "image file does not exist"))
        for annotation in data["annotations"]:
            image = self.coco.imgs.get(annotation.get("image_id"))
            if image is None:
                problems.append(
                    _Problem(
                        str(self.ann_file),
                        None,
                        f"annotation id {annotation.get('id')} refers to image id "
                        f"{annotation.get('image_id')!r}, which is not in 'images'",
                    )
                )
                continue
            file = str(self.image_dir / image["file_name"])
            if annotation.get("category_id") not in self.coco.cats:
                category = annotation.get("category_id")
                reason = f"annotation id {annotation.get('id')}: unknown category id {category!r}"
                problems.append(_Problem(file, image["id"], reason))
                continue
            reason = _annotation_problem(annotation, image["height"], image["width"])
            if reason is not None and DEGENERATE in reason and degenerate_boxes == "drop":
                self.dropped.append((file, image["id"], reason))
                self._dropped_ids.add(annotation.get("id"))
            elif reason is not None:
                problems.append(_Problem(file, image["id"], reason))
            else:
                self.num_annotations["crowd" if annotation.get("iscrowd", 0) else "instances"] += 1
        if strict and problems:
            shown = "; ".join(map(str, problems[:5]))
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise DatasetError(
                f"annotation file {self.ann_file}: {len(problems)} problems: {shown}{more} "
                "(`ccnet data check coco` lists them all)"
            )
        self.problems = [(p.file, p.image_id, p.reason) for p in problems]
        self._bad_ids = {p.image_id for p in problems if p.image_id is not None}
        if self.dropped:
            file, image_id, reason = self.dropped[0]
            log.warning(
                "annotation file %s: %d annotations with a zero-size box left out of the targets, first %s "
                "(image id %d): %s (degenerate_boxes='error' refuses them)",
                self.ann_file, len(self.dropped), file, image_id, reason,
            )  # fmt: skip

    @property
    def num_classes(self) -> int:
        """Classes including background (the ``num_classes`` of torchvision's detection models)."""
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.ann_file}, {self.image_dir}: {len(self)} images, "
            f"{self.num_classes - 1} classes)"
        )

    def image_path(self, index: int) -> Path:
        return self.image_dir / self.coco.imgs[self.image_ids[index]]["file_name"]

    def load_raw(self, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The untransformed sample: ``uint8`` ``(H, W, 3)`` RGB and ``{"boxes": float32 (N, 4) XYXY,
        "labels": int64 (N,), "masks": uint8 (N, H, W)}`` of the non-crowd instances.

        Raises:
            DatasetError: naming the image file and id (undecodable image, a size other than the JSON's,
                an RLE string that does not decode).
        """
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        path = self.image_dir / info["file_name"]
        try:
            image = read_image(path)
        except DatasetError as error:
            raise DatasetError(f"image id {image_id}: {error}") from error
        height, width = info["height"], info["width"]
        if image.shape[:2] != (height, width):
            raise DatasetError(
                f"image {path} (image id {image_id}) is {image.shape[0]}x{image.shape[1]}, but the "
                f"annotation file {self.ann_file} says {height}x{width}"
            )
        boxes, labels, masks = [], [], []
        for annotation in self._instances(image_id):
            x, y, w, h = annotation["bbox"]
            boxes.append([x, y, x + w, y + h])
            labels.append(self.category_id_to_label[annotation["category_id"]])
            try:
                mask = _decode_mask(annotation["segmentation"], height, width)
            except ValueError as error:  # pycocotools: "Invalid RLE mask representation"
                raise DatasetError(
                    f"image {path} (image id {image_id}): annotation id {annotation.get('id')}: "
                    f"mask cannot be decoded: {error}"
                ) from error
            masks.append(mask)
        target = {
            "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            "labels": np.asarray(labels, dtype=np.int64),
            "masks": np.stack(masks) if masks else np.zeros((0, height, width), dtype=np.uint8),
        }
        # rounding in the annotation tool: the overshoot allowed by OUTSIDE_TOLERANCE is cut off
        target["boxes"][:, 0::2] = target["boxes"][:, 0::2].clip(0, width)
        target["boxes"][:, 1::2] = target["boxes"][:, 1::2].clip(0, height)
        return image, target

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image, raw = self.load_raw(index)
        height, width = image.shape[:2]
        # PIL's arrays are read-only; torch wants its own copy anyway
        pixels = tv_tensors.Image(torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div_(255))
        target = {
            "boxes": tv_tensors.BoundingBoxes(
                torch.from_numpy(raw["boxes"]), format="XYXY", canvas_size=(height, width)
            ),
            "labels": torch.from_numpy(raw["labels"]),
            "masks": tv_tensors.Mask(torch.from_numpy(raw["masks"])),
            "image_id": self.image_ids[index],
        }
        if self.transforms is not None:
            pixels, target = self.transforms(pixels, target)
        return pixels, target


def coco_dataset(
    root: str | Path | None = None,
    split: str = "train",
    *,
    ann_file: str | Path | None = None,
    image_dir: str | Path | None = None,
    year: int = 2017,
    **kwargs: Any,
) -> CocoInstanceDataset:
    """COCO in its official layout (``root`` and ``split``) or any COCO-format set (``ann_file`` and
    ``image_dir``, relative to ``root`` when it is given: a run config's ``data.root`` with per-split
    ``data.options`` / ``data.val_options``); ``kwargs`` go to :class:`CocoInstanceDataset`.

    Raises:
        DatasetError: a missing layout, naming the file or folder expected.
        ValueError: ``ann_file`` without ``image_dir`` or the reverse, or no ``root`` and no ``ann_file``.
    """
    if (ann_file is None) != (image_dir is None):
        raise ValueError("give both the annotation file and the image folder (ann_file and image_dir)")
    if ann_file is not None:
        if root is not None:
            root = Path(root).expanduser()
            ann_file, image_dir = root / Path(ann_file).expanduser(), root / Path(image_dir).expanduser()
        return CocoInstanceDataset(ann_file, image_dir, **kwargs)
    if root is None:
        raise ValueError("give a COCO root folder or ann_file and image_dir")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"COCO root {root} does not exist")
    ann_file, image_dir = official_paths(root, split, year)
    if not ann_file.is_file():
        raise DatasetError(
            f"COCO root {root}: {ann_file} does not exist (expected annotations/instances_{{train,val}}{year}"
            f".json and {{train,val}}{year}/ as in the official archives)"
        )
    return CocoInstanceDataset(ann_file, image_dir, **kwargs)


def official_paths(root: str | Path, split: str, year: int = 2017) -> tuple[Path, Path]:
    """The annotation file and image folder of ``split`` in COCO's official layout under ``root``:
    ``annotations/instances_{split}2017.json`` and ``{split}2017/``; ``test-dev``:
    ``annotations/image_info_test-dev2017.json`` (images, no annotations) and ``test2017/``."""
    root = Path(root)
    if split == "test-dev":
        return root / "annotations" / f"image_info_test-dev{year}.json", root / f"test{year}"
    return root / "annotations" / f"instances_{split}{year}.json", root / f"{split}{year}"


def coco_ground_truth(
    samples: Iterable[tuple[tuple[int, int], dict[str, Any]]],
    class_names: Sequence[str],
    label_to_category_id: dict[int, int] | None = None,
):
    """A pycocotools ``COCO`` holding generated ground truth (e.g. a built-in task), for COCOeval.

    ``samples``: ``((H, W), target)`` with ``target["image_id"]``, ``"labels"`` ``(N,)`` and ``"masks"``
    ``(N, H, W)`` (boxes are taken from the masks, as tight boxes, like the masks' COCO ``bbox``).
    ``class_names``: names of labels 1..K (index 0 = background is skipped). Labels are the category ids
    unless ``label_to_category_id`` maps them.
    """
    require_pycocotools()
    from pycocotools import mask as mask_utils

    mapping = label_to_category_id or {k: k for k in range(1, len(class_names))}
    images, annotations = [], []
    for (height, width), target in samples:
        image_id = int(target["image_id"])
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": height, "width": width})
        masks = np.asarray(target["masks"], dtype=np.uint8).reshape(-1, height, width)
        for label, mask in zip(np.asarray(target["labels"]).tolist(), masks, strict=True):
            rle = mask_utils.encode(np.asfortranarray(mask))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": mapping[int(label)],
                    "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                    "area": float(mask_utils.area(rle)),
                    "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                    "iscrowd": 0,
                }
            )
    categories = [{"id": mapping[k], "name": class_names[k]} for k in sorted(mapping)]
    return _quiet_coco({"images": images, "annotations": annotations, "categories": categories})


# ---------------------------------------------------------------------------------------------------------
# ccnet data check coco


@dataclass
class CocoCheckReport:
    """Result of :func:`check_coco`; ``bad`` holds ``(file, image id or None, reason)``."""

    ann_file: str
    image_dir: str
    error: str | None = None  # the annotation file could not be read at all
    classes: tuple[str, ...] = ()
    images_listed: int = 0
    images_found: int = 0
    instances: int = 0
    crowd: int = 0
    empty_images: int = 0
    checked: int = 0
    sizes: Counter = field(default_factory=Counter)  # (H, W) -> images
    per_class: Counter = field(default_factory=Counter)  # label -> non-crowd instances of checked images
    bad: list[tuple[str, int | None, str]] = field(default_factory=list)
    dropped: list[tuple[str, int, str]] = field(default_factory=list)  # zero-size boxes (not a failure)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.bad

    def summary(self) -> str:
        """One line: why the check failed (empty when it passed)."""
        if self.error is not None:
            return self.error
        if not self.bad:
            return ""
        file, image_id, reason = self.bad[0]
        where = file + (f" (image id {image_id})" if image_id is not None else "")
        more = f" (and {len(self.bad) - 1} more)" if len(self.bad) > 1 else ""
        return f"{self.ann_file}: {len(self.bad)} problems, first {where}: {reason}{more}"


class _DecodedImages(Dataset):
    def __init__(self, dataset: CocoInstanceDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            image, target = self.dataset.load_raw(index)
        except DatasetError as error:
            return {"error": str(error), "index": index}
        return {"size": image.shape[:2], "labels": target["labels"].tolist()}


def _unbatched(item: dict[str, Any]) -> dict[str, Any]:
    return item


def check_coco(
    root: str | Path | None = None,
    split: str = "val",
    *,
    ann_file: str | Path | None = None,
    image_dir: str | Path | None = None,
    workers: int = 0,
    limit: int | None = None,
    progress: bool = True,
) -> CocoCheckReport:
    """Validate a COCO-format set: the annotation file, then every image and mask decoded (the first
    ``limit`` images only if given). Never raises for bad data: reports it."""
    if ann_file is None:
        shown = official_paths(root, split) if root is not None else (None, None)
    else:
        shown = (ann_file, image_dir) if root is None else (Path(root) / ann_file, Path(root) / image_dir)
    report = CocoCheckReport(ann_file=str(shown[0]), image_dir=str(shown[1]))
    try:
        dataset = coco_dataset(root, split, ann_file=ann_file, image_dir=image_dir, strict=False)
    except (DatasetError, ValueError) as error:
        report.error = str(error)
        return report
    report.classes = dataset.classes
    report.images_listed = len(dataset.coco.imgs)
    report.images_found = sum(
        (dataset.image_dir / image["file_name"]).is_file() for image in dataset.coco.imgs.values()
    )
    report.instances = dataset.num_annotations["instances"]
    report.crowd = dataset.num_annotations["crowd"]
    report.empty_images = dataset.empty_images
    report.bad += dataset.problems
    report.dropped += dataset.dropped

    count = len(dataset) if limit is None else min(limit, len(dataset))
    items: Dataset = _DecodedImages(dataset)
    if count < len(dataset):
        items = torch.utils.data.Subset(items, range(count))
    loader = DataLoader(items, batch_size=None, num_workers=workers, collate_fn=_unbatched)
    for item in tqdm(loader, total=count, desc="checking coco", unit="img", disable=not progress):
        report.checked += 1
        if "error" in item:
            index = item["index"]
            report.bad.append((str(dataset.image_path(index)), dataset.image_ids[index], item["error"]))
        else:
            report.sizes[tuple(item["size"])] += 1
            report.per_class.update(item["labels"])
    return report


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    render = [
        "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in [header, *rows]
    ]
    return [render[0], "  ".join("-" * w for w in widths), *render[1:]]


def format_coco_report(report: CocoCheckReport, max_bad: int = 20) -> str:
    """Plain text: counts, image sizes, instances per class, problems, and OK / FAILED."""
    lines = [f"coco annotations {report.ann_file}  images {report.image_dir}"]
    if report.error is not None:
        return "\n".join([*lines, f"ERROR: {report.error}"])
    counts = [
        ("images listed", report.images_listed),
        ("images found", report.images_found),
        ("instances", report.instances),
        ("crowd regions", report.crowd),
        ("images without instances", report.empty_images),
        ("categories", len(report.classes) - 1),
        ("images checked", report.checked),
        ("zero-size boxes dropped", len(report.dropped)),
        ("problems", len(report.bad)),
    ]
    lines += ["", *_table([(k, str(v)) for k, v in counts], ("count", "value"))]
    sizes = [(f"{h}x{w}", str(n)) for (h, w), n in report.sizes.most_common(10)]
    lines += ["", *_table(sizes, ("image size (HxW)", "images"))]
    if len(report.sizes) > 10:
        lines.append(f"... {len(report.sizes) - 10} more sizes")
    rows = [
        (f"{k} {name}", str(report.per_class[k]))
        for k, name in enumerate(report.classes)
        if k > 0 and (name != "N/A" or report.per_class[k])
    ]
    lines += ["", *_table(rows, ("class", "instances"))]
    for title, items in (
        ("annotations left out of training for a zero-size box", report.dropped),
        ("problems", report.bad),
    ):
        if items:
            lines += ["", f"{title} ({len(items)}):"]
            for file, image_id, reason in items[:max_bad]:
                where = file + (f" (image id {image_id})" if image_id is not None else "")
                lines.append(f"  {where}: {reason}")
            if len(items) > max_bad:
                lines.append(f"  ... and {len(items) - max_bad} more")
    lines += ["", "OK" if report.ok else "FAILED: problems found"]
    return "\n".join(lines)
