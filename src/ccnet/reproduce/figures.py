"""The demos' pictures: prediction panels (images and clips) and the paper's attention figure.

Tiles are (H, W, 3) uint8 RGB arrays; :func:`panel` lays them out in a grid and writes a PNG. The attention
figure's maps are the weights the library's op computes in the forward pass (:mod:`ccnet.ops.recording`), not
a re-implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ccnet.reproduce.context_task import axis_distance, object_pixels

__all__ = [
    "attention_figure",
    "attention_maps",
    "attention_overlay",
    "clip_prediction_figure",
    "colourise",
    "criss_cross_weights",
    "heat_colours",
    "log_scale",
    "mark",
    "panel",
    "prediction_figure",
]

WHITE, CYAN = (255, 255, 255), (0, 255, 255)

_HEAT = np.array(  # a perceptual dark-to-bright colour ramp (inferno-like anchors)
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float64,
)


# --- attention maps ---------------------------------------------------------------------------------------
def criss_cross_weights(cca: nn.Module, x: Tensor) -> Tensor:
    """The attention matrix of one criss-cross pass, as the library's op computes it in the forward pass.

    ``cca``: a :class:`~ccnet.ops.CrissCrossAttention`; ``x``: its input (1, C, H, W). Returns A (HW, HW),
    A[u, j] = the softmax weight of position j in the output of position u (flattened row-major); nonzero
    only on u's row and column, each row summing to 1. Recorded with
    :func:`ccnet.ops.recording.record_attention`.
    """
    from ccnet.ops.recording import record_attention

    with torch.no_grad(), record_attention() as records:
        cca(x)
    return records[0].matrix()


def attention_maps(cca: nn.Module, x: Tensor, pixel: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """The paper's attention figure for feature position ``pixel`` = (h, w).

    ``x``: the RCCA input (1, C, H, W). Returns (loop1, loop2), both (H, W): loop 1 = the criss-cross
    weights of ``pixel`` (a cross); loop 2 = its effective reach after the second pass, the composition
    (A2 @ A1)[u] of the attention maps of the two passes (the second computed on the first pass's output),
    i.e. how much each position feeds ``pixel`` through attention paths of two hops. Both sum to 1.
    """
    from ccnet.ops.recording import record_attention, two_step_reach

    with torch.no_grad(), record_attention() as records:
        cca(cca(x))
    first, second = records
    return first.weights_of(pixel), two_step_reach(first, second, pixel)


# --- colours and tiles ------------------------------------------------------------------------------------
def heat_colours(values: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 colours of the ramp."""
    position = np.clip(values, 0, 1) * (len(_HEAT) - 1)
    low = np.floor(position).astype(int).clip(0, len(_HEAT) - 2)
    t = (position - low)[..., None]
    return np.rint(_HEAT[low] * (1 - t) + _HEAT[low + 1] * t).astype(np.uint8)


def log_scale(weights: np.ndarray, decades: float = 6.0, floor: float = 0.05) -> np.ndarray:
    """Attention weights -> [0, 1] on a log scale: the maximum -> 1, ``decades`` below it -> ``floor``;
    positive weights never go below ``floor`` (so they stay visible), exact zeros -> 0."""
    top = float(weights.max())
    if top <= 0:
        return np.zeros_like(weights, dtype=np.float64)
    ratio = np.maximum(weights / top, 10.0**-decades)
    scaled = floor + (1 - floor) * (1 + np.log10(ratio) / decades)
    return np.where(weights > 0, scaled, 0.0)


def _upsample(array: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)


def colourise(label: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(H, W) class indices -> (H, W, 3) uint8 colours of ``palette`` (indices beyond it: black)."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return table[label.astype(np.int64).clip(0, 255)]


def mark(tile: np.ndarray, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> np.ndarray:
    """A copy of ``tile`` with the outline of box (y0, x0, y1, x1) (exclusive ends) drawn in ``colour``."""
    out = tile.copy()
    y0, x0, y1, x1 = (max(0, v) for v in box)
    y1, x1 = min(y1, out.shape[0]), min(x1, out.shape[1])
    out[y0:y1, [x0, x1 - 1]] = colour
    out[[y0, y1 - 1], x0:x1] = colour
    return out


def _overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.7) -> np.ndarray:
    """Blend a (h, w) heat map in [0, 1] (nearest-upsampled to the image) over the greyed image; cells
    with heat 0 (zero weight) keep the grey image."""
    factor = image.shape[0] // heat.shape[0]
    big = _upsample(heat, factor)[: image.shape[0], : image.shape[1]]
    grey = image.mean(axis=2, keepdims=True).repeat(3, axis=2)
    blend = (1 - alpha) * grey + alpha * heat_colours(big)
    return np.rint(np.where(big[..., None] > 0, blend, grey)).astype(np.uint8)


def attention_overlay(
    image: np.ndarray, weights: np.ndarray, box: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """An (H, W, 3) uint8 picture of attention ``weights`` (h, w) over ``image`` (H, W, 3), any sizes.

    The weights are log-scaled (:func:`log_scale`), coloured with the heat ramp, nearest-resized to the image
    and blended over its grey version; zero weights keep the grey image. ``box`` (y0, x0, y1, x1): the
    image pixels of the chosen feature cell, outlined in white (2 px where the image is large enough).
    """
    height, width = image.shape[:2]
    heat = log_scale(np.asarray(weights, dtype=np.float64))
    # nearest: image pixel (y, x) shows feature cell (y * h // H, x * w // W)
    big = heat[np.arange(height) * heat.shape[0] // height][:, np.arange(width) * heat.shape[1] // width]
    grey = image.mean(axis=2, keepdims=True).repeat(3, axis=2)
    blend = 0.3 * grey + 0.7 * heat_colours(big)
    out = np.rint(np.where(big[..., None] > 0, blend, grey)).astype(np.uint8)
    if box is not None:
        out = mark(out, box, WHITE)
        if min(height, width) >= 128:
            y0, x0, y1, x1 = box
            out = mark(out, (y0 - 1, x0 - 1, y1 + 1, x1 + 1), WHITE)
    return out


def panel(tiles: list[list[np.ndarray]], titles: list[str], scale: int, path: Path) -> None:
    """PNG of a grid of equal-size RGB tiles (rows x columns), each upscaled ``scale``x, ``titles`` above
    the columns."""
    from PIL import Image, ImageDraw

    h, w = tiles[0][0].shape[:2]
    th, tw, pad, top = h * scale, w * scale, 4, 16
    columns = len(tiles[0])
    canvas = Image.new("RGB", (columns * (tw + pad) + pad, top + len(tiles) * (th + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(titles):
        draw.text((pad + c * (tw + pad) + 2, 2), title, fill=(0, 0, 0))
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            image = Image.fromarray(_upsample(tile, scale))
            canvas.paste(image, (pad + c * (tw + pad), top + pad + r * (th + pad)))
    canvas.save(path, optimize=True)


# --- figures ----------------------------------------------------------------------------------------------
def prediction_figure(models: dict[str, nn.Module], dataset: Any, indices: list[int], path: Path) -> None:
    """PNG: per image ``indices`` of a context ``dataset``: image | ground truth | each model's prediction
    (``models``: column title -> model)."""
    from ccnet.engine.inference import Segmenter

    palette = dataset.meta.palette
    samples = [dataset.generate(i) for i in indices]
    images = [image for image, _, _ in samples]
    predictions = [Segmenter(m, mode="whole", test_scale=None).predict(images) for m in models.values()]
    tiles = []
    for j, (image, label, _) in enumerate(samples):
        row = [image, colourise(label, palette)]
        row += [colourise(predicted[j].numpy(), palette) for predicted in predictions]
        tiles.append(row)
    panel(tiles, ["image", "ground truth", *models], 2, path)


def clip_prediction_figure(
    models: dict[str, nn.Module], dataset: Any, indices: list[int], path: Path
) -> None:
    """PNG: for each clip ``indices`` of a ``context_video`` dataset, rows image / ground truth / the
    prediction of each of ``models``; one column per frame; the marker (the cue) outlined in cyan in its
    frame."""
    from ccnet.engine.inference import Segmenter

    palette = dataset.meta.palette
    m = dataset.config.marker_size
    tiles = []
    for index in indices:
        images, labels, info = dataset.generate(index)
        (my, mx), cue = info["marker_yx"], info["marker_frame"]
        frames = [
            mark(image, (my - 2, mx - 2, my + m + 2, mx + m + 2), CYAN) if t == cue else image
            for t, image in enumerate(images)
        ]
        rows = [frames, [colourise(label, palette) for label in labels]]
        for model in models.values():
            predicted = Segmenter(model, mode="whole", test_scale=None).predict(images)
            rows.append([colourise(label, palette) for label in predicted.numpy()])
        tiles += rows
    panel(tiles, [f"frame {t}" for t in range(dataset.clip_length)], 2, path)


def _farthest_object_pixel(
    label: np.ndarray, marker_yx: tuple[int, int], marker_size: int
) -> tuple[int, int]:
    """An object pixel at the largest axis distance from the marker ((0, 0) if there is no object)."""
    distance = axis_distance(*label.shape, marker_yx, marker_size)
    objects = object_pixels(label, marker_yx, marker_size)
    if not objects.any():
        return 0, 0
    far = np.argwhere(objects & (distance == distance[objects].max()))
    py, px = far[len(far) // 2]
    return int(py), int(px)


def attention_figure(model: nn.Module, dataset: Any, indices: list[int], path: Path) -> list[dict[str, Any]]:
    """PNG of the paper's attention figure for the trained RCCA model on ``indices`` of a context
    ``dataset``.

    Per image: the image (chosen pixel in white, marker in cyan) | loop-1 weights of the pixel (the cross)
    | reach after loop 2 (the whole image). Heat maps are on a log scale over 6 decades below their maximum
    (:func:`log_scale`); zero weights show the plain image. Returns per image the pixel and the share of
    loop-2 reach that lies on the marker.
    """
    from ccnet.engine.inference import Segmenter

    context = model.head.context
    captured: dict[str, Tensor] = {}
    handle = context.register_forward_pre_hook(lambda m, inputs: captured.__setitem__("x", inputs[0]))
    segmenter = Segmenter(model, mode="whole", test_scale=None)
    stride = model.output_stride
    size = dataset.config.marker_size
    tiles, facts = [], []
    try:
        for index in indices:
            image, label, info = dataset.generate(index)
            segmenter.predict(image)
            x = captured["x"][:1].float()
            my, mx = info["marker_yx"]
            py, px = _farthest_object_pixel(label, (my, mx), size)
            fy, fx = min(py // stride, x.shape[2] - 1), min(px // stride, x.shape[3] - 1)
            loop1, loop2 = (m.numpy() for m in attention_maps(context.cca, x, (fy, fx)))
            marker_cells = np.zeros_like(loop2, dtype=bool)
            marker_cells[
                my // stride : (my + size - 1) // stride + 1, mx // stride : (mx + size - 1) // stride + 1
            ] = True
            facts.append(
                {
                    "index": index,
                    "pixel_yx": [py, px],
                    "feature_yx": [fy, fx],
                    "loop1_nonzero_off_cross": float(
                        np.delete(np.delete(loop1, fy, axis=0), fx, axis=1).sum()
                    ),
                    "loop1_on_marker": float(loop1[marker_cells].sum()),
                    "loop2_on_marker": float(loop2[marker_cells].sum()),
                    "marker_share_of_image": float(marker_cells.mean()),
                }
            )
            pixel_box = (fy * stride, fx * stride, (fy + 1) * stride, (fx + 1) * stride)
            marker_box = (my - 1, mx - 1, my + size + 1, mx + size + 1)
            shown = mark(mark(image, marker_box, CYAN), pixel_box, WHITE)
            heat1 = mark(_overlay(image, log_scale(loop1)), pixel_box, WHITE)
            heat2 = mark(_overlay(image, log_scale(loop2)), pixel_box, WHITE)
            tiles.append([shown, heat1, mark(heat2, marker_box, CYAN)])
    finally:
        handle.remove()
    panel(tiles, ["image: pixel, marker", "loop 1: criss-cross", "loop 2: reach"], 3, path)
    return facts
