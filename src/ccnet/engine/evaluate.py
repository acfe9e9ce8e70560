"""Evaluation on a dataset split: predictions through :class:`~ccnet.engine.inference.Segmenter`, an
accumulated confusion matrix summed over processes, reports (terminal table, JSON, markdown) and
test-server files (``--format-only``).

Images are read raw (``uint8`` (3, H, W)) and the Segmenter applies the model's own normalisation and the
protocol (whole / sliding window, test scale, multi-scale + flip); labels stay at their original size, so
scores are computed at full resolution. With several processes each one takes every ``world_size``-th image.
Clips (video datasets: image (T, 3, H, W), mask (T, H, W)) are scored on every labelled frame, or on the
centre frame alone when the model predicts only that one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from ccnet.clips import centre_index
from ccnet.config import EvalConfig
from ccnet.engine.dist import DistContext
from ccnet.engine.inference import Segmenter
from ccnet.metrics import ConfusionMatrix, SegmentationMetrics

__all__ = [
    "build_segmenter",
    "evaluate",
    "format_only",
    "format_table",
    "raw_pair",
    "scored_mask",
    "submission_labels",
    "write_reports",
]


def raw_pair(image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Dataset transform that keeps the ``uint8`` image and mask as they are (evaluation input)."""
    return image, mask


def _as_list(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items


def scored_mask(labels: Tensor, mask: Tensor) -> Tensor:
    """The part of ``mask`` that ``labels`` predicts: all of it, or the centre frame of a clip mask
    (T, H, W) when the prediction is one frame (H, W)."""
    if mask.dim() == labels.dim() + 1:
        return mask[centre_index(mask.shape[0])]
    return mask


def build_segmenter(
    model: nn.Module,
    config: EvalConfig,
    *,
    default_crop: Sequence[int] | None = None,
    default_test_scale: Sequence[int] | None = None,
    flip_pairs: Sequence[Sequence[int]] = (),
) -> Segmenter:
    """A :class:`Segmenter` for ``config``; unset crop size and test scale fall back to the given defaults
    (the training crop and the dataset's test scale). ``flip_pairs``: the dataset's left/right classes,
    swapped in flip testing."""
    options: dict[str, Any] = {
        "mode": config.mode,
        "test_scale": config.test_scale or (tuple(default_test_scale) if default_test_scale else None),
        "scales": config.scales,
        "flip": config.flip,
        "flip_pairs": flip_pairs,
        "batch_size": config.batch_size,
    }
    if config.mode == "slide":
        crop = config.crop_size or (tuple(default_crop) if default_crop else None)
        options.update(crop_size=crop if crop is not None else "auto", stride=config.stride or "auto")
    return Segmenter(model, **options)


def _shard(dataset: Dataset, ctx: DistContext) -> Dataset:
    if not ctx.distributed:
        return dataset
    return Subset(dataset, range(ctx.rank, len(dataset), ctx.world_size))  # type: ignore[arg-type]


def evaluate(
    segmenter: Segmenter,
    dataset: Dataset,
    num_classes: int,
    *,
    ctx: DistContext | None = None,
    ignore_index: int = 255,
    num_workers: int = 0,
    progress: bool = True,
) -> SegmentationMetrics:
    """Scores of ``segmenter`` on ``dataset`` (items with a raw ``uint8`` image, see :func:`raw_pair`).

    Every process must call it (the confusion matrix is summed across processes); all get the same result.
    """
    ctx = ctx or DistContext()
    matrix = ConfusionMatrix(num_classes, ignore_index=ignore_index, device=ctx.device)
    loader = DataLoader(
        _shard(dataset, ctx),
        batch_size=max(1, segmenter.batch_size),
        collate_fn=_as_list,
        num_workers=num_workers,
        generator=torch.Generator(),  # leaves the global generator alone (training reproducibility)
    )
    bar = tqdm(
        total=len(loader.dataset),
        desc="eval",
        unit="img",
        disable=not (progress and ctx.is_main),
        leave=False,
    )
    for items in loader:
        labels = segmenter.predict([item["image"] for item in items])
        for label, item in zip(labels, items, strict=True):
            matrix.update(label, scored_mask(label, item["mask"]))
        bar.update(len(items))
    bar.close()
    matrix.all_reduce()
    return matrix.compute()


def _percent(value: float) -> str:
    return "   nan" if math.isnan(value) else f"{100 * value:6.2f}"


def format_table(metrics: SegmentationMetrics, classes: Sequence[str]) -> str:
    """Per-class IoU / Acc table (percent) with the summary line; NaN classes are shown as ``nan``."""
    width = max(10, *(len(c) for c in classes))
    lines = [f"{'class':<{width}}    IoU    Acc", "-" * (width + 14)]
    for name, iou, acc in zip(classes, metrics.iou, metrics.acc, strict=True):
        lines.append(f"{name:<{width}} {_percent(iou)} {_percent(acc)}")
    lines.append("-" * (width + 14))
    lines.append(
        f"mIoU {_percent(metrics.miou).strip()}  mAcc {_percent(metrics.macc).strip()}  "
        f"aAcc {_percent(metrics.aacc).strip()}  ({metrics.pixels} labelled pixels)"
    )
    return "\n".join(lines)


def _markdown(metrics: SegmentationMetrics, classes: Sequence[str], title: str) -> str:
    rows = [f"# {title}", "", "| class | IoU | Acc |", "|---|---:|---:|"]
    for name, iou, acc in zip(classes, metrics.iou, metrics.acc, strict=True):
        rows.append(f"| {name} | {_percent(iou).strip()} | {_percent(acc).strip()} |")
    rows += [
        "",
        f"**mIoU {_percent(metrics.miou).strip()}**, mAcc {_percent(metrics.macc).strip()}, "
        f"aAcc {_percent(metrics.aacc).strip()} ({metrics.pixels} labelled pixels; percent; classes absent "
        "from both predictions and labels are nan and left out of the means).",
        "",
    ]
    return "\n".join(rows)


def write_reports(
    metrics: SegmentationMetrics,
    classes: Sequence[str],
    directory: str | Path,
    *,
    stem: str = "metrics",
    extra: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``<stem>.json`` (fractions, NaN as null, plus ``extra``) and ``<stem>.md`` (percent)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / f"{stem}.json", directory / f"{stem}.md"
    payload = {**(extra or {}), **metrics.as_dict(tuple(classes))}
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    md_path.write_text(_markdown(metrics, classes, title=str((extra or {}).get("title", stem))))
    return json_path, md_path


# --- test-server files --------------------------------------------------------------------------------
def submission_labels(labels: np.ndarray, dataset_name: str) -> np.ndarray:
    """Training ids (H, W) -> the values a dataset's evaluation server expects, ``uint8``.

    Cityscapes: labelIds (trainId -> labelId); ADE20K: 1..150 (0 is "other"); others: training ids.
    """
    if dataset_name == "cityscapes":
        from ccnet.data.meta import CITYSCAPES_TRAIN_ID_TO_LABEL_ID

        lookup = np.asarray(CITYSCAPES_TRAIN_ID_TO_LABEL_ID, dtype=np.uint8)
        return lookup[labels]
    if dataset_name == "ade20k":
        return (labels + 1).astype(np.uint8)
    return labels.astype(np.uint8)


def format_only(
    segmenter: Segmenter,
    dataset: Dataset,
    directory: str | Path,
    *,
    dataset_name: str,
    palette: Sequence[Sequence[int]] | None = None,
    ctx: DistContext | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> int:
    """Write one PNG per image in the server's format (:func:`submission_labels`) and return the count.

    Files are named after the image (``<image stem>.png``; ``<index>.png`` for generated data). Cityscapes and
    ADE20K files are greyscale; the others are palette PNGs of training ids (``palette`` when given).
    """
    ctx = ctx or DistContext()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    loader = DataLoader(
        _shard(dataset, ctx),
        batch_size=max(1, segmenter.batch_size),
        collate_fn=_as_list,
        num_workers=num_workers,
        generator=torch.Generator(),
    )
    flat_palette = [v for colour in (palette or ()) for v in colour]
    written = 0
    bar = tqdm(total=len(loader.dataset), desc="format", unit="img", disable=not (progress and ctx.is_main))
    for items in loader:
        labels = segmenter.predict([item["image"] for item in items])
        for label, item in zip(labels, items, strict=True):
            if label.dim() != 2:
                raise ValueError(
                    f"format_only writes one PNG per image; the model predicts clips ({tuple(label.shape)})"
                )
            meta = item["meta"]
            stem = Path(meta["image_path"]).stem if meta.get("image_path") else f"{meta['index']:06d}"
            values = submission_labels(label.numpy(), dataset_name)
            image = Image.fromarray(values)  # (H, W) uint8 -> mode "L"
            if dataset_name not in ("cityscapes", "ade20k") and flat_palette:
                image.putpalette(flat_palette)  # "L" -> "P", pixel values become palette indices
            image.save(directory / f"{stem}.png")
            written += 1
        bar.update(len(items))
    bar.close()
    return written
