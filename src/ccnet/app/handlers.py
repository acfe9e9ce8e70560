"""What the app's page does, as plain functions (the page only wires them to widgets; tests call them).

Images: read (any file PIL decodes; problems become an :class:`AppError` with a message for the page),
shrunk to ``max_side`` pixels on the long edge when larger (the page says so), segmented with the chosen
inference mode and backend, and shown as an overlay (adjustable opacity), a label map and a legend.

Attention explorer: a click on image pixel (x, y) picks the feature cell under it; the model's forward pass
on the shown image (whole image, plain torch model) runs once per image under
:func:`ccnet.ops.recording.record_attention`, and the recorded weights give the loop-1 map (the cell's row
and column), the loop-2 map (the same cross, over loop 1's outputs) and the combined two-step map (how much
each cell feeds the clicked one through both loops), each drawn over the image with the cell outlined.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ccnet.app.models import AppModel

__all__ = [
    "AppError",
    "AttentionViews",
    "Segmentation",
    "attention_views",
    "label_picture",
    "legend_html",
    "legend_rows",
    "load_image",
    "overlay_picture",
    "sample_images",
    "save_downloads",
    "segment",
    "segment_video",
]

DEFAULT_MAX_SIDE = 1024
MIN_SHOWN_SIDE = 256  # small images (the built-in task's 64x64) are shown enlarged, pixels kept sharp


class AppError(Exception):
    """A problem to show on the page (bad file, unusable weights, ...); the server keeps serving."""


@dataclass
class Segmentation:
    """One segmented image. ``image``: (H, W, 3) uint8 as segmented (after any shrinking); ``labels``:
    (H, W) class indices; ``seconds``: inference time; ``note``: what was done to the input (or "")."""

    image: np.ndarray
    labels: np.ndarray
    seconds: float
    note: str = ""
    records: list | None = field(default=None, repr=False)  # the attention weights, recorded on first click


@dataclass
class AttentionViews:
    """(H', W', 3) uint8 pictures of the clicked cell's attention (H', W' = the enlarged shown size);
    ``loop2`` and ``combined`` are None for a model with one loop. ``cell``: the feature cell (row, column)
    of the grid ``grid``."""

    loop1: np.ndarray
    loop2: np.ndarray | None
    combined: np.ndarray | None
    cell: tuple[int, int]
    grid: tuple[int, int]


def load_image(path: str | Path | None, max_side: int = DEFAULT_MAX_SIDE) -> tuple[np.ndarray, str]:
    """(H, W, 3) uint8 RGB of the file at ``path``, shrunk (keep ratio) when its long side exceeds
    ``max_side``, and a note saying so ("" otherwise).

    Raises:
        AppError: no file, an empty file, a file that is not an image, or one too large to decode.
    """
    from ccnet.data import DatasetError, read_image

    if path is None:
        raise AppError("no image: upload an image file or pick a sample")
    path = Path(path)
    if not path.is_file():
        raise AppError(f"{path.name}: no such file")
    if path.stat().st_size == 0:
        raise AppError(f"{path.name}: empty file (0 bytes), not an image")
    try:
        image = read_image(path)
    except (DatasetError, Image.DecompressionBombError, MemoryError) as err:
        raise AppError(f"{path.name}: not a readable image ({err})") from err
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image, ""
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    shrunk = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    return shrunk, f"resized from {width}x{height} to {size[0]}x{size[1]} (--max-side {max_side})"


def sample_images(count: int = 6) -> list[tuple[str, np.ndarray]]:
    """(name, 64x64 image) of the first ``count`` validation samples of the built-in context task."""
    from ccnet.data import ContextDataset

    dataset = ContextDataset(split="val", length=count)
    return [(f"context sample {i}", dataset.generate(i)[0]) for i in range(count)]


def parse_scales(text: str) -> tuple[float, ...]:
    """'0.75 1 1.25' (spaces or commas) -> (0.75, 1.0, 1.25); AppError naming the text otherwise."""
    try:
        scales = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        scales = ()
    if not scales or min(scales) <= 0 or max(scales) > 4:
        raise AppError(f"scales {text!r}: expected positive factors up to 4, e.g. '1.0' or '0.75 1.0 1.25'")
    return scales


def segment(
    app_model: AppModel,
    image: np.ndarray,
    *,
    mode: str = "whole",
    flip: bool = False,
    scales: str | Sequence[float] = (1.0,),
    backend: str = "torch",
    crop_size: int = 512,
    note: str = "",
) -> Segmentation:
    """Segment ``image`` (H, W, 3) uint8 with the model's ``backend`` runner; ``mode`` "whole" or "slide"
    (tiles of ``crop_size``), averaged over ``scales`` and the horizontal ``flip``.

    Raises:
        AppError: a bad option, or the model failing on this input (message from the model).
    """
    from ccnet.data.meta import flip_pairs_for_classes
    from ccnet.engine.inference import Segmenter

    if app_model.video:
        raise AppError(f"{app_model.name} is a video model: use the video tab")
    if isinstance(scales, str):
        scales = parse_scales(scales)
    crop = min(int(crop_size), *image.shape[:2]) if mode == "slide" else None
    try:
        segmenter = Segmenter(
            app_model.runner(backend),
            mode=mode,
            crop_size=crop if mode == "slide" else "auto",
            test_scale=None,
            scales=scales,
            flip=flip,
            flip_pairs=flip_pairs_for_classes(app_model.classes),
        )
        start = time.perf_counter()
        labels = segmenter.predict(image).numpy()
        seconds = time.perf_counter() - start
    except (ValueError, RuntimeError) as err:
        raise AppError(f"{app_model.name} cannot segment this image: {err}") from err
    return Segmentation(image, labels.astype(np.int64), seconds, note)


def _enlarge(image: np.ndarray) -> np.ndarray:
    """Small images enlarged by a whole factor (nearest) so that the long side is >= MIN_SHOWN_SIDE."""
    factor = max(1, MIN_SHOWN_SIDE // max(image.shape[:2]))
    return image if factor == 1 else np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def shown_image(segmentation: Segmentation) -> np.ndarray:
    """The image as the page shows it (small images enlarged), the one the attention clicks land on."""
    return _enlarge(segmentation.image)


def overlay_picture(segmentation: Segmentation, palette: Sequence[Sequence[int]], alpha: float) -> np.ndarray:
    """The label colours blended over the image with opacity ``alpha`` in [0, 1], as shown."""
    from ccnet.engine.predict import overlay

    alpha = float(min(max(alpha, 0.0), 1.0))
    return _enlarge(np.asarray(overlay(segmentation.image, segmentation.labels, palette, alpha)))


def label_picture(segmentation: Segmentation, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """The label map in the class colours, as shown."""
    from ccnet.reproduce.figures import colourise

    return _enlarge(colourise(segmentation.labels, palette))


def legend_rows(
    segmentation: Segmentation, classes: Sequence[str], palette: Sequence[Sequence[int]]
) -> list[tuple[str, str, float]]:
    """(class name, colour "#rrggbb", share of pixels in %) of each class present, largest share first."""
    counts = np.bincount(segmentation.labels.ravel(), minlength=len(classes))
    total = counts.sum()
    rows = []
    for k in np.argsort(-counts, kind="stable"):
        if counts[k] == 0:
            break
        name = classes[k] if k < len(classes) else f"class {k}"
        r, g, b = palette[k] if k < len(palette) else (0, 0, 0)
        rows.append((name, f"#{r:02x}{g:02x}{b:02x}", 100.0 * counts[k] / total))
    return rows


def legend_html(rows: Sequence[tuple[str, str, float]]) -> str:
    """The legend as an HTML table: colour swatch, class, share."""
    lines = [
        f'<tr><td><span style="display:inline-block;width:1.2em;height:1.2em;background:{colour};'
        f'border:1px solid #888"></span></td><td>{html.escape(name)}</td><td>{share:.1f}%</td></tr>'
        for name, colour, share in rows
    ]
    return (
        '<table class="ccnet-legend"><tr><th></th><th>class</th><th>pixels</th></tr>'
        + "".join(lines)
        + "</table>"
    )


def save_downloads(
    segmentation: Segmentation, palette: Sequence[Sequence[int]], alpha: float, folder: str | Path, stem: str
) -> tuple[Path, Path]:
    """Write ``<stem>.png`` (palette PNG: pixel value = class index) and ``<stem>_overlay.png`` (at the
    segmented size) into ``folder``; returns both paths."""
    from ccnet.engine.predict import colorize, overlay

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    label_path, overlay_path = folder / f"{stem}.png", folder / f"{stem}_overlay.png"
    colorize(segmentation.labels, palette).save(label_path)
    overlay(segmentation.image, segmentation.labels, palette, float(min(max(alpha, 0.0), 1.0))).save(
        overlay_path
    )
    return label_path, overlay_path


def _record(app_model: AppModel, image: np.ndarray) -> list:
    """The attention weights of the model's forward pass on ``image`` (whole image, plain torch model)."""
    from ccnet.engine.inference import to_image_tensor
    from ccnet.ops.recording import record_attention
    from ccnet.preprocess import IMAGENET_RGB

    model = app_model.model
    preprocess = getattr(model, "preprocess", None) or IMAGENET_RGB
    parameter = next(model.parameters())
    x = preprocess(to_image_tensor(image)[None].to(parameter.device, torch.float32)).to(parameter.dtype)
    with torch.inference_mode(), record_attention() as records:
        model(x)
    return records


def attention_views(app_model: AppModel, segmentation: Segmentation, x: float, y: float) -> AttentionViews:
    """The attention pictures of the feature cell under the shown-image pixel (x, y) (see the module
    docstring). Records the weights on the first call for an image and reuses them.

    Raises:
        AppError: a model without criss-cross attention, or a video model.
    """
    from ccnet.ops.recording import two_step_reach
    from ccnet.reproduce.figures import attention_overlay

    if app_model.video or not app_model.has_attention:
        raise AppError(f"{app_model.name} has no 2-D criss-cross attention to explore")
    if segmentation.records is None:
        segmentation.records = _record(app_model, segmentation.image)
    records = segmentation.records
    shown = shown_image(segmentation)
    height, width = shown.shape[:2]
    grid_h, grid_w = records[0].grid
    column = min(max(int(x), 0), width - 1) * grid_w // width
    row = min(max(int(y), 0), height - 1) * grid_h // height
    # the shown pixels of the cell: those that the nearest resize of attention_overlay maps to it
    box = (-(-row * height // grid_h), -(-column * width // grid_w))
    box = (*box, -(-(row + 1) * height // grid_h), -(-(column + 1) * width // grid_w))

    def draw(weights: torch.Tensor) -> np.ndarray:
        return attention_overlay(shown, weights.numpy(), box)

    loop1 = draw(records[0].weights_of((row, column)))
    if len(records) < 2:
        return AttentionViews(loop1, None, None, (row, column), (grid_h, grid_w))
    loop2 = draw(records[1].weights_of((row, column)))
    combined = draw(two_step_reach(records[0], records[1], (row, column)))
    return AttentionViews(loop1, loop2, combined, (row, column), (grid_h, grid_w))


def segment_video(
    app_model: AppModel,
    path: str | Path | None,
    out_dir: str | Path,
    *,
    alpha: float = 0.5,
    backend: str = "torch",
    progress: bool = True,
) -> tuple[Path, int, float]:
    """Segment every frame of the video ``path`` (a video model: each frame with its clip) and write its
    overlay MP4 into ``out_dir``; returns (the video, frames, seconds).

    Raises:
        AppError: no file, an empty or unreadable video.
    """
    from ccnet.data import DatasetError
    from ccnet.engine.inference import Segmenter
    from ccnet.engine.predict import predict_video

    if path is None:
        raise AppError("no video: upload a video file")
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise AppError(f"{path.name}: empty file (0 bytes) or no such file, not a video")
    segmenter = Segmenter(app_model.runner(backend), mode="whole", test_scale=None)
    start = time.perf_counter()
    try:
        video, frames = predict_video(
            segmenter, path, out_dir, app_model.palette, alpha=float(alpha), progress=progress
        )
    except DatasetError as err:
        raise AppError(str(err).replace(str(path), path.name)) from err
    except (ValueError, RuntimeError) as err:
        raise AppError(f"{app_model.name} cannot segment this video: {err}") from err
    return video, frames, time.perf_counter() - start
