"""What the demo measures on the built-in context task: axis distance and object accuracy by distance.

On the ``context`` dataset (:mod:`ccnet.data.synthetic`) every object's class is the colour of one marker
elsewhere in the image. One criss-cross hop from a pixel reaches features centred on its own row and column
only, so how well a model labels an object pixel depends on how far the pixel's row and column pass from the
marker: its *axis distance*.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

__all__ = ["DISTANCE_BINS", "axis_distance", "object_accuracy", "object_pixels"]

DISTANCE_BINS = ((0, 8), (8, 16), (16, 24), (24, 64))  # axis distance bins (px), [low, high)


def axis_distance(height: int, width: int, marker_yx: tuple[int, int], marker_size: int) -> np.ndarray:
    """(H, W) int: how far (px) the nearer of a pixel's row and column passes from the marker's box.

    0 for pixels whose row or column crosses the marker; one criss-cross hop from a pixel reaches features
    centred on its row and column only, so this is what R=1 depends on.
    """
    my, mx = marker_yx
    ys, xs = np.arange(height), np.arange(width)
    dy = np.maximum(0, np.maximum(my - ys, ys - (my + marker_size - 1)))  # (H,)
    dx = np.maximum(0, np.maximum(mx - xs, xs - (mx + marker_size - 1)))  # (W,)
    return np.minimum(dy[:, None], dx[None, :])


def object_pixels(label: np.ndarray, marker_yx: tuple[int, int], marker_size: int) -> np.ndarray:
    """(H, W) bool: the labelled pixels of ``label`` outside the marker's box."""
    my, mx = marker_yx
    objects = label > 0
    objects[my : my + marker_size, mx : mx + marker_size] = False
    return objects


def object_accuracy(model: nn.Module, dataset: Any, batch_size: int = 32) -> dict[str, Any]:
    """Object-pixel accuracy of ``model`` on a context ``dataset``, overall and per :data:`DISTANCE_BINS`.

    Object pixels = labelled pixels outside the marker box. Returns ``{"object_accuracy", "bins": [hits,
    count] per bin}``.
    """
    from ccnet.engine.inference import Segmenter

    segmenter = Segmenter(model, mode="whole", test_scale=None, batch_size=batch_size)
    hits = np.zeros(len(DISTANCE_BINS), dtype=np.int64)
    counts = np.zeros(len(DISTANCE_BINS), dtype=np.int64)
    marker_size = dataset.config.marker_size
    for start in range(0, len(dataset), batch_size):
        samples = [dataset.generate(i) for i in range(start, min(start + batch_size, len(dataset)))]
        predictions = segmenter.predict([image for image, _, _ in samples])
        for (_, label, info), prediction in zip(samples, predictions, strict=True):
            objects = object_pixels(label, info["marker_yx"], marker_size)
            distance = axis_distance(*label.shape, info["marker_yx"], marker_size)
            correct = prediction.numpy() == label
            for b, (low, high) in enumerate(DISTANCE_BINS):
                where = objects & (distance >= low) & (distance < high)
                hits[b] += int(correct[where].sum())
                counts[b] += int(where.sum())
    total = int(counts.sum())
    return {
        "object_accuracy": float(hits.sum() / total) if total else float("nan"),
        "bins": [[int(h), int(c)] for h, c in zip(hits, counts, strict=True)],
    }
