"""Official COCO evaluation of instance predictions with pycocotools' COCOeval (bbox and segm).

A detection model in the torchvision style (eval mode: ``model(list of (3, H, W) images)`` -> one dict per
image with ``boxes`` XYXY ``(N, 4)``, ``labels`` ``(N,)``, ``scores`` ``(N,)`` and ``masks`` ``(N, 1, H, W)``
probabilities) is run over a dataset that exposes ``dataset.coco`` (the ground truth) and
``dataset.label_to_category_id`` (:class:`ccnet.data.coco.CocoInstanceDataset`):

>>> metrics = evaluate_instances(model, dataset, detections_path="detections.json")  # doctest: +SKIP
>>> print(metrics.format_table())  # doctest: +SKIP

The lower level, usable without a model: :class:`CocoResults` turns predictions into COCO's results format
(``image_id``, ``category_id`` mapped back from the label, ``bbox`` ``[x, y, w, h]`` and ``segmentation`` an
RLE with ``counts`` a string, both in original image coordinates, ``score``), the file the COCO test server
takes, and :meth:`CocoResults.evaluate` scores them. Masks are binarised at 0.5 after being resized to the
original image. As in detectron2, mask AP measures the size ranges (small / medium / large) by mask area,
box AP by box area.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ccnet.data.coco import collate_instances, require_pycocotools

__all__ = [
    "IOU_TYPES",
    "METRIC_NAMES",
    "CocoResults",
    "InstanceMetrics",
    "collect_detections",
    "evaluate_instances",
    "prediction_to_coco",
]

IOU_TYPES = ("bbox", "segm")
# the first six numbers of COCOeval.stats: AP@[.50:.95], AP@.50, AP@.75, AP small / medium / large
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


@dataclass
class InstanceMetrics:
    """COCOeval's AP numbers per IoU type, as fractions in [0, 1]; ``nan`` where COCOeval has no ground
    truth (e.g. APl when no object is large). ``bbox`` / ``segm``: ``{name: value}`` for
    :data:`METRIC_NAMES` (``segm`` is None when the predictions hold no masks)."""

    bbox: dict[str, float]
    segm: dict[str, float] | None
    num_images: int
    num_detections: int

    @property
    def box_ap(self) -> float:
        return self.bbox["AP"]

    @property
    def mask_ap(self) -> float:
        return math.nan if self.segm is None else self.segm["AP"]

    def format_table(self) -> str:
        """The AP numbers as percentages, one row per IoU type."""
        header = f"{'':6s}" + "".join(f"{name:>8s}" for name in METRIC_NAMES)
        rows = [header]
        for iou_type in IOU_TYPES:
            values = getattr(self, iou_type)
            if values is not None:
                rows.append(f"{iou_type:6s}" + "".join(_percent(values[name]) for name in METRIC_NAMES))
        rows.append(f"{self.num_images} images, {self.num_detections} detections (COCOeval, AP in %)")
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``nan`` becomes ``None``."""

        def clean(values: dict[str, float] | None) -> dict[str, float | None] | None:
            return None if values is None else {k: None if math.isnan(v) else v for k, v in values.items()}

        return {
            "bbox": clean(self.bbox),
            "segm": clean(self.segm),
            "num_images": self.num_images,
            "num_detections": self.num_detections,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InstanceMetrics:
        def load(values: Mapping[str, Any] | None) -> dict[str, float] | None:
            if values is None:
                return None
            return {name: math.nan if values[name] is None else float(values[name]) for name in METRIC_NAMES}

        return cls(
            load(data["bbox"]), load(data.get("segm")), int(data["num_images"]), int(data["num_detections"])
        )

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> InstanceMetrics:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _percent(value: float) -> str:
    return f"{'-':>8s}" if math.isnan(value) else f"{100 * value:8.2f}"


def _as_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float32 if value.is_floating_point() else value.dtype).numpy()
    return np.asarray(value)


def prediction_to_coco(
    prediction: Mapping[str, Any],
    image_id: int,
    label_to_category_id: Mapping[int, int],
    *,
    original_size: tuple[int, int],
    input_size: tuple[int, int] | None = None,
    score_threshold: float = 0.0,
    mask_threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """One image's prediction -> COCO results entries.

    Args:
        prediction: ``boxes`` XYXY ``(N, 4)``, ``labels`` ``(N,)``, ``scores`` ``(N,)``, optional ``masks``
            ``(N, 1, h, w)`` or ``(N, h, w)`` probabilities (or 0/1) at the input size.
        original_size: ``(H, W)`` of the image in the annotation file (COCO's coordinates).
        input_size: ``(h, w)`` the model saw (default: ``original_size``); boxes and masks are mapped back.

    Raises:
        ValueError: a label without a category id.
    """
    from pycocotools import mask as mask_utils

    height, width = original_size
    in_height, in_width = input_size or original_size
    scores = _as_numpy(prediction["scores"]).reshape(-1)
    keep = np.nonzero(scores >= score_threshold)[0]
    boxes = _as_numpy(prediction["boxes"]).reshape(-1, 4)[keep].astype(np.float64)
    boxes[:, 0::2] *= width / in_width
    boxes[:, 1::2] *= height / in_height
    labels = _as_numpy(prediction["labels"]).reshape(-1)[keep]
    rles: list[dict[str, Any]] | None = None
    if "masks" in prediction:
        masks = prediction["masks"]
        masks = masks if isinstance(masks, torch.Tensor) else torch.as_tensor(np.asarray(masks))
        masks = (
            masks.detach().to("cpu", torch.float32).reshape(-1, 1, *masks.shape[-2:])[torch.as_tensor(keep)]
        )
        if tuple(masks.shape[-2:]) != (height, width) and len(masks):
            masks = F.interpolate(masks, size=(height, width), mode="bilinear", align_corners=False)
        binary = np.asfortranarray((masks[:, 0] > mask_threshold).numpy().astype(np.uint8).transpose(1, 2, 0))
        rles = mask_utils.encode(binary) if len(keep) else []
    results = []
    for n, (label, score) in enumerate(zip(labels.tolist(), scores[keep].tolist(), strict=True)):
        if int(label) not in label_to_category_id:
            raise ValueError(
                f"image id {image_id}: predicted label {label} has no category id (labels "
                f"{sorted(label_to_category_id)})"
            )
        x0, y0, x1, y1 = boxes[n].tolist()
        entry = {
            "image_id": int(image_id),
            "category_id": int(label_to_category_id[int(label)]),
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "score": float(score),
        }
        if rles is not None:
            entry["segmentation"] = {
                "size": list(rles[n]["size"]),
                "counts": rles[n]["counts"].decode("ascii"),
            }
        results.append(entry)
    return results


class CocoResults:
    """Accumulates detections in COCO's results format and scores them with COCOeval.

    Args:
        coco_gt: pycocotools ``COCO`` with the ground truth (crowd regions included).
        label_to_category_id: model label -> COCO category id.
    """

    def __init__(self, coco_gt: Any, label_to_category_id: Mapping[int, int]) -> None:
        require_pycocotools()
        self.coco_gt = coco_gt
        self.label_to_category_id = dict(label_to_category_id)
        self.results: list[dict[str, Any]] = []
        self.image_ids: list[int] = []  # the images predicted (those evaluated), in order
        self.has_masks = True

    def add(
        self,
        image_id: int,
        prediction: Mapping[str, Any],
        *,
        input_size: tuple[int, int] | None = None,
        score_threshold: float = 0.0,
    ) -> None:
        """Add one image's prediction (at ``input_size``, default the image's size in the ground truth).

        Raises:
            ValueError: an image id that is not in the ground truth, or a label without a category id.
        """
        info = self.coco_gt.imgs.get(int(image_id))
        if info is None:
            raise ValueError(f"image id {image_id} is not in the ground truth")
        self.image_ids.append(int(image_id))
        self.has_masks &= "masks" in prediction
        self.results += prediction_to_coco(
            prediction,
            int(image_id),
            self.label_to_category_id,
            original_size=(info["height"], info["width"]),
            input_size=input_size,
            score_threshold=score_threshold,
        )

    def merge(self, *others: CocoResults) -> CocoResults:
        """Add the detections of other accumulators over the same ground truth (e.g. the shards of a
        distributed evaluation, gathered with ``torch.distributed.all_gather_object``); returns self."""
        for other in others:
            self.results += other.results
            self.image_ids += other.image_ids
            self.has_masks &= other.has_masks
        return self

    def write(self, path: str | Path) -> Path:
        """The detections as COCO results JSON (the file the COCO evaluation server takes)."""
        path = Path(path)
        path.write_text(json.dumps(self.results))
        return path

    def evaluate(self) -> InstanceMetrics:
        """COCOeval bbox (and segm when every prediction had masks) over the images added."""
        scores = {t: self._evaluate(t) for t in IOU_TYPES if t == "bbox" or self.has_masks}
        return InstanceMetrics(
            bbox=scores["bbox"],
            segm=scores.get("segm"),
            num_images=len(set(self.image_ids)),
            num_detections=len(self.results),
        )

    def _evaluate(self, iou_type: str) -> dict[str, float]:
        from pycocotools.cocoeval import COCOeval

        # When a result holds a box, loadRes measures the area from it; mask AP must size objects by their
        # mask (detectron2 does the same), and box AP does not need the masks.
        dropped = "bbox" if iou_type == "segm" else "segmentation"
        results = [{k: v for k, v in r.items() if k != dropped} for r in self.results]
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            detections = self._load_results(results)
            evaluator = COCOeval(self.coco_gt, detections, iou_type)
            evaluator.params.imgIds = sorted(set(self.image_ids))
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        return {name: _nan_if_missing(v) for name, v in zip(METRIC_NAMES, evaluator.stats[:6], strict=True)}

    def _load_results(self, results: list[dict[str, Any]]) -> Any:
        if results:
            return self.coco_gt.loadRes(copy.deepcopy(results))
        # loadRes cannot take an empty list; no detection at all is still a valid (AP 0) result
        from pycocotools.coco import COCO

        empty = COCO()
        empty.dataset = {
            "images": list(self.coco_gt.dataset["images"]),
            "categories": copy.deepcopy(self.coco_gt.dataset["categories"]),
            "annotations": [],
        }
        empty.createIndex()
        return empty


def _nan_if_missing(value: float) -> float:
    return math.nan if value < 0 else float(value)  # COCOeval writes -1 where no ground truth exists


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def collect_detections(
    model: nn.Module,
    dataset: Any,
    *,
    batch_size: int = 1,
    score_threshold: float = 0.05,
    num_workers: int = 0,
    progress: bool = True,
) -> CocoResults:
    """Run ``model`` (eval mode, no gradients) over ``dataset`` and collect its detections (scores below
    ``score_threshold`` dropped) in original image coordinates."""
    results = CocoResults(dataset.coco, dataset.label_to_category_id)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_instances)
    device, was_training = _device_of(model), model.training
    model.eval()
    try:
        with torch.inference_mode():
            for images, targets in tqdm(loader, desc="coco eval", unit="batch", disable=not progress):
                outputs = model([image.to(device) for image in images])
                for image, target, output in zip(images, targets, outputs, strict=True):
                    results.add(
                        int(target["image_id"]),
                        output,
                        input_size=tuple(image.shape[-2:]),
                        score_threshold=score_threshold,
                    )
    finally:
        model.train(was_training)
    return results


def evaluate_instances(
    model: nn.Module,
    dataset: Any,
    *,
    batch_size: int = 1,
    score_threshold: float = 0.05,
    progress: bool = True,
    num_workers: int = 0,
    detections_path: str | Path | None = None,
) -> InstanceMetrics:
    """COCOeval box and mask AP of ``model`` on ``dataset`` (see the module docstring); the detections are
    also written to ``detections_path`` in COCO's results format when given."""
    results = collect_detections(
        model,
        dataset,
        batch_size=batch_size,
        score_threshold=score_threshold,
        num_workers=num_workers,
        progress=progress,
    )
    if detections_path is not None:
        results.write(detections_path)
    return results.evaluate()
