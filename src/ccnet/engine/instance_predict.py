"""Instance predictions on image files: overlays and per-image detections JSON (``ccnet predict`` with an
instance segmentation model).

For each input ``<stem>.<ext>`` the output folder receives ``<stem>_overlay.png`` (each instance above the
score threshold in its own colour: its mask blended over the image, its box, and a "class score" label) and
``<stem>.json``::

    {"image": "<input path>", "height": H, "width": W, "score_threshold": t,
     "detections": [{"label": int, "class": str, "score": float, "box": [x0, y0, x1, y1],
                     "mask": {"size": [H, W], "counts": str}}, ...]}   # COCO's compressed RLE

in pixel coordinates of the input image, highest score first. The model is torchvision-style (eval mode:
``model(list of float (3, H, W) images in [0, 1])`` -> dicts of ``boxes``, ``labels``, ``scores``,
``masks`` ``(N, 1, H, W)`` probabilities). Unreadable inputs are reported and skipped.
"""

from __future__ import annotations

import colorsys
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks
from tqdm import tqdm

from ccnet.data import DatasetError, read_image
from ccnet.engine.predict import PredictReport, check_output_folder

__all__ = [
    "draw_instances",
    "instance_colours",
    "instance_labels",
    "kept_detections",
    "predict_instances",
]

MASK_THRESHOLD = 0.5


def instance_colours(count: int) -> list[tuple[int, int, int]]:
    """``count`` distinct, saturated colours: hues spaced by the golden ratio, so neighbours in the list
    (instances drawn next to each other) never share a hue."""
    colours = []
    for n in range(count):
        red, green, blue = colorsys.hsv_to_rgb((0.1 + n * 0.618033988749895) % 1.0, 0.85, 0.95)
        colours.append((round(255 * red), round(255 * green), round(255 * blue)))
    return colours


def kept_detections(prediction: Mapping[str, Any], score_threshold: float) -> dict[str, torch.Tensor]:
    """The detections scoring at least ``score_threshold``, highest score first, on the CPU; ``masks`` as
    ``bool`` ``(N, H, W)`` (probabilities above 0.5) when the prediction has masks."""
    scores = torch.as_tensor(prediction["scores"]).detach().float().cpu().reshape(-1)
    order = torch.argsort(scores, descending=True, stable=True)
    order = order[scores[order] >= score_threshold]
    kept = {
        "boxes": torch.as_tensor(prediction["boxes"]).detach().float().cpu().reshape(-1, 4)[order],
        "labels": torch.as_tensor(prediction["labels"]).detach().cpu().reshape(-1)[order].long(),
        "scores": scores[order],
    }
    if "masks" in prediction:
        masks = torch.as_tensor(prediction["masks"]).detach().float().cpu()
        kept["masks"] = masks.reshape(-1, *masks.shape[-2:])[order] > MASK_THRESHOLD
    return kept


def instance_labels(detections: Mapping[str, torch.Tensor], class_names: Sequence[str]) -> list[str]:
    """ "class score" per detection (``label <n>`` for a label without a name)."""
    names = []
    for label, score in zip(detections["labels"].tolist(), detections["scores"].tolist(), strict=True):
        name = class_names[label] if 0 <= label < len(class_names) else f"label {label}"
        names.append(f"{name} {score:.2f}")
    return names


def _as_uint8_chw(image: np.ndarray | Image.Image | torch.Tensor) -> torch.Tensor:
    """``(H, W, 3)`` uint8 array, a PIL image or a float ``(3, H, W)`` tensor in [0, 1] -> uint8 (3, H, W)."""
    if isinstance(image, torch.Tensor):
        pixels = image.detach().cpu()
        if pixels.is_floating_point():
            pixels = (pixels.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
        return pixels.reshape(3, *pixels.shape[-2:])
    array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.uint8)
    return torch.from_numpy(np.array(array)).permute(2, 0, 1)


def draw_instances(
    image: np.ndarray | Image.Image | torch.Tensor,
    prediction: Mapping[str, Any],
    class_names: Sequence[str],
    *,
    score_threshold: float = 0.5,
    alpha: float = 0.5,
    box_width: int = 2,
) -> Image.Image:
    """The image with each detection scoring at least ``score_threshold`` drawn in its own colour
    (:func:`instance_colours`, in the order of decreasing score): mask blended as
    ``(1 - alpha) * image + alpha * colour``, box outline ``box_width`` pixels wide, "class score" label.

    ``prediction`` holds ``boxes`` XYXY ``(N, 4)``, ``labels``, ``scores`` and optionally ``masks``
    ``(N, 1, H, W)`` at the image's size. Returns an RGB PIL image of the image's size.

    Raises:
        ValueError: masks of another size than the image.
    """
    pixels = _as_uint8_chw(image)
    detections = kept_detections(prediction, score_threshold)
    count = len(detections["scores"])
    if count == 0:
        return Image.fromarray(pixels.permute(1, 2, 0).numpy())
    colours = instance_colours(count)
    if "masks" in detections:
        if tuple(detections["masks"].shape[-2:]) != tuple(pixels.shape[-2:]):
            raise ValueError(
                f"masks of size {tuple(detections['masks'].shape[-2:])} do not match the image's "
                f"{tuple(pixels.shape[-2:])}"
            )
        pixels = draw_segmentation_masks(pixels, detections["masks"], alpha=alpha, colors=colours)
    pixels = draw_bounding_boxes(pixels, detections["boxes"], colors=colours, width=box_width)
    overlay = Image.fromarray(pixels.permute(1, 2, 0).numpy())
    _draw_labels(overlay, detections["boxes"], instance_labels(detections, class_names), colours)
    return overlay


def _draw_labels(
    image: Image.Image, boxes: torch.Tensor, texts: Sequence[str], colours: Sequence[tuple[int, int, int]]
) -> None:
    """White "class score" text on the instance's colour at each box's top-left corner: above the box when
    there is room, else just inside it. The font grows with the image (about 1/40 of the shorter side)."""
    font = ImageFont.load_default(size=max(10, round(min(image.size) / 40)))
    draw = ImageDraw.Draw(image)
    labels = list(zip(boxes.tolist(), texts, colours, strict=True))
    for (x0, y0, _, _), text, colour in reversed(labels):  # the highest score's label ends on top
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        height = bottom - top + 2
        y = y0 - height if y0 - height >= 0 else y0
        draw.rectangle((x0, y, x0 + right - left + 2, y + height), fill=colour)
        draw.text((x0 + 1 - left, y + 1 - top), text, fill=(255, 255, 255), font=font)


def _detections_json(
    path: Path,
    image: np.ndarray,
    detections: Mapping[str, torch.Tensor],
    class_names: Sequence[str],
    threshold,
) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    entries = []
    names = instance_labels(detections, class_names)
    for n in range(len(detections["scores"])):
        entry = {
            "label": int(detections["labels"][n]),
            "class": names[n].rsplit(" ", 1)[0],
            "score": float(detections["scores"][n]),
            "box": [float(v) for v in detections["boxes"][n]],
        }
        if "masks" in detections:
            rle = mask_utils.encode(np.asfortranarray(detections["masks"][n].numpy().astype(np.uint8)))
            entry["mask"] = {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}
        entries.append(entry)
    height, width = image.shape[:2]
    return {
        "image": str(path),
        "height": height,
        "width": width,
        "score_threshold": threshold,
        "detections": entries,
    }


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, n = path.stem, 1
    while stem in used:  # the same file name from different folders
        n += 1
        stem = f"{path.stem}_{n}"
    used.add(stem)
    return stem


def predict_instances(
    model: nn.Module,
    files: Sequence[str | Path],
    out_dir: str | Path,
    class_names: Sequence[str],
    *,
    score_threshold: float = 0.5,
    alpha: float = 0.5,
    with_overlay: bool = True,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> PredictReport:
    """Run ``model`` on each image file and write ``<stem>.json`` and ``<stem>_overlay.png`` into
    ``out_dir`` (see the module docstring). ``report.written`` pairs each input with its JSON file.

    Raises:
        OutputPathError: ``out_dir`` is a file, lies under one, or is not writable (checked first).
    """
    out_dir = check_output_folder(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device) if device is not None else _device_of(model)
    report, used = PredictReport(), set()
    was_training = model.training
    model.eval()
    try:
        for path in tqdm([Path(f) for f in files], desc="predict", unit="img", disable=not progress):
            try:
                image = read_image(path)
            except DatasetError as error:
                report.failed.append((str(path), str(error)))
                continue
            pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div_(255)
            with torch.inference_mode():
                (prediction,) = model([pixels.to(device)])
            detections = kept_detections(prediction, score_threshold)
            stem = _unique_stem(path, used)
            json_path = out_dir / f"{stem}.json"
            record = _detections_json(path, image, detections, class_names, score_threshold)
            json_path.write_text(json.dumps(record, indent=1) + "\n")
            if with_overlay:
                overlay = draw_instances(
                    image, prediction, class_names, score_threshold=score_threshold, alpha=alpha
                )
                overlay.save(out_dir / f"{stem}_overlay.png")
            report.written.append((path, json_path))
    finally:
        model.train(was_training)
    return report
