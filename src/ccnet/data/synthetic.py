"""The built-in "context" datasets: procedurally generated, no files, deterministic by (seed, split, index).

The rule (``ContextDataset``, the default dataset of ``get_dataset()``):

- An ``S x S`` image (default 64) with a noisy grey background (one grey level per image plus Gaussian pixel
  noise, identical in R, G and B).
- One ``marker_size`` square marker (default 6x6) of a saturated colour: red, green or blue, uniformly. Its
  colour is the image's *context class* ``c`` in {1 = red, 2 = green, 3 = blue}.
- ``num_objects`` objects (default 3-5): grey striped squares or discs of side / diameter in ``object_size``
  (default 8-14 px). Their look (shape, stripe direction, width, grey levels) is random and independent of
  ``c``, so nothing local tells the classes apart.
- Labels: every object pixel **and every marker pixel** is class ``c``; everything else is background (0).
  Labelling the marker lets a backbone encode the colour where the marker sits; attention then only has to
  carry it to the objects.
- Objects keep a gap of at least ``min_marker_distance`` px (default 12) to the marker and 2 px to each
  other. Under ``marker_placement="anywhere"`` (default) the gap is between bounding boxes along either axis
  (the marker is anywhere, objects are >= 12 px away); ``"corner"`` puts the marker in a random corner
  (objects are mostly farther); ``"off_axis"`` requires the gap along *both* axes, so no object overlaps the
  rows or columns of the marker's neighbourhood: one criss-cross hop from a local feature cannot see the
  cue, two hops can.

So an object pixel's class depends on a cue outside a small local receptive field: models without context
are at chance on objects, row/column context (CCNet R=1) is right where an object's row or column passes near
the marker, full-image context (R=2) everywhere. Difficulty grows with ``image_size`` and
``min_marker_distance`` and with ``marker_placement="off_axis"``.

Video (``ContextVideoDataset``): clips of ``clip_length`` frames; objects drift by at most ``max_shift`` px
per frame, the background noise is redrawn every frame, and the marker appears in one frame only
(``marker_frame``: "first", "random" or a frame number). Objects are class ``c`` in *every* frame, so in the
other frames the cue is in another frame and a model needs temporal context. Items: ``"image"``
``(T, 3, S, S)``, ``"mask"`` ``(T, S, S)`` (all frames labelled; the marker pixels only in the marker frame).

Handed (``HandedDataset``, ``get_dataset("handed")``): a task with a left/right class pair, like LIP's arms.
A saturated red vertical bar (the "body", class 3, ``bar_width`` px wide, full height, at a random column in
the middle half) and ``num_objects`` grey striped objects (as above) that keep ``bar_gap`` px from the bar:
an object left of the bar is class 1 ("left object"), right of it class 2 ("right object"). The mirror image
of a sample is a valid sample with classes 1 and 2 swapped (``meta.flip_pairs = ((1, 2),)``), so a flip
that does not swap them teaches (or, at test time, averages in) the wrong side.

Sample ``i`` is generated from ``numpy.random.default_rng([seed, split, i, variant])`` alone, independently
of every other sample, with vectorised numpy (a Python loop over the <= a few objects, never over pixels).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from ccnet.data.base import PairTransform, SegmentationDataset, register_dataset
from ccnet.data.meta import CONTEXT, CONTEXT_MARKER_COLOURS, HANDED

PLACEMENTS = ("anywhere", "corner", "off_axis")
_SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
_DEFAULT_LENGTH = {"train": 8192, "val": 512, "test": 512}
_OBJECT_GAP = 2  # px between objects
_CANDIDATES = 64  # object positions tried at once per object
_LAYOUT_ATTEMPTS = 20


@dataclass(frozen=True)
class ContextConfig:
    """Generator settings (see the module docstring for their effect)."""

    image_size: int = 64
    num_objects: tuple[int, int] = (3, 5)  # inclusive range
    object_size: tuple[int, int] = (8, 14)  # inclusive range, px
    marker_size: int = 6
    min_marker_distance: int = 12
    marker_placement: str = "anywhere"
    noise_std: float = 12.0

    def __post_init__(self) -> None:
        if self.marker_placement not in PLACEMENTS:
            raise ValueError(f"marker_placement {self.marker_placement!r} not in {PLACEMENTS}")
        if not 1 <= self.num_objects[0] <= self.num_objects[1]:
            raise ValueError(
                f"num_objects must be a range (low, high) with 1 <= low <= high, got {self.num_objects}"
            )
        if not 1 <= self.object_size[0] <= self.object_size[1] <= self.image_size:
            raise ValueError(f"object_size {self.object_size} must be a range within 1..image_size")
        if not 1 <= self.marker_size <= self.image_size:
            raise ValueError(f"marker_size {self.marker_size} must be in 1..image_size {self.image_size}")
        if self.min_marker_distance < 0:
            raise ValueError(f"min_marker_distance must be >= 0, got {self.min_marker_distance}")


def _axis_gaps(tops: np.ndarray, size: int, other_top: np.ndarray, other_size: int) -> np.ndarray:
    """Per-axis gaps (px) between [top, top + size) and [other_top, other_top + size); < 0 = overlap.

    ``tops`` (N, 2) -> (N, 2).
    """
    return np.maximum(other_top - (tops + size), tops - (other_top + other_size))


def _place_marker(rng: np.random.Generator, config: ContextConfig) -> np.ndarray:
    """Top-left (y, x) of the marker, int64 (2,)."""
    last = config.image_size - config.marker_size
    if config.marker_placement == "corner":
        corner = rng.integers(0, 2, size=2) * last
        jitter = rng.integers(0, min(3, last + 1), size=2)
        return np.abs(corner - jitter)
    return rng.integers(0, last + 1, size=2)


def _sample_layout(
    rng: np.random.Generator, config: ContextConfig, drift: int = 0
) -> tuple[np.ndarray, list]:
    """Marker top-left (2,) and objects [(top-left (2,), size)]; gaps survive ``drift`` px of motion."""
    low, high = config.num_objects
    best: tuple[np.ndarray, list] | None = None
    for _ in range(_LAYOUT_ATTEMPTS):
        marker = _place_marker(rng, config)
        wanted = int(rng.integers(low, high + 1))
        objects: list[tuple[np.ndarray, int]] = []
        for _ in range(wanted):
            size = int(rng.integers(config.object_size[0], config.object_size[1] + 1))
            tops = rng.integers(0, config.image_size - size + 1, size=(_CANDIDATES, 2))  # (N, 2) y, x
            gaps = _axis_gaps(tops, size, marker, config.marker_size)  # (N, 2)
            marker_gap = gaps.min(axis=1) if config.marker_placement == "off_axis" else gaps.max(axis=1)
            ok = marker_gap >= config.min_marker_distance + drift
            for top, other_size in objects:
                ok &= _axis_gaps(tops, size, top, other_size).max(axis=1) >= _OBJECT_GAP + 2 * drift
            free = np.flatnonzero(ok)
            if free.size:
                objects.append((tops[free[0]], size))
        if len(objects) >= low:
            return marker, objects
        if objects and (best is None or len(objects) > len(best[1])):
            best = (marker, objects)
    if best is None:
        raise ValueError(
            f"no object fits the constraints of {config}; lower min_marker_distance or object_size"
        )
    return best


def _render_objects(
    rng: np.random.Generator, config: ContextConfig, objects: list, tops_per_frame: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Grey object pixels and their masks.

    ``tops_per_frame`` (T, n, 2) top-left corners -> grey ``float64`` (T, S, S) (NaN outside objects) and
    ``bool`` (T, S, S) object masks.
    """
    frames, size_px = tops_per_frame.shape[0], config.image_size
    yy = np.arange(size_px)[None, :, None]  # (1, S, 1)
    xx = np.arange(size_px)[None, None, :]  # (1, 1, S)
    grey = np.full((frames, size_px, size_px), np.nan)
    inside_any = np.zeros((frames, size_px, size_px), dtype=bool)
    for k, (_, size) in enumerate(objects):
        disc = bool(rng.integers(2))
        stripe_width = int(rng.integers(2, 4))
        vertical = bool(rng.integers(2))
        dark, bright = rng.uniform(25, 75), rng.uniform(175, 235)
        ly = yy - tops_per_frame[:, k, 0][:, None, None]  # (T, S, 1) coordinates inside the object box
        lx = xx - tops_per_frame[:, k, 1][:, None, None]  # (T, 1, S)
        if disc:
            centre, radius = (size - 1) / 2, size / 2
            inside = (ly - centre) ** 2 + (lx - centre) ** 2 <= radius**2
        else:
            inside = (ly >= 0) & (ly < size) & (lx >= 0) & (lx < size)
        along = np.broadcast_to(lx if vertical else ly, inside.shape)
        stripes = np.where((along // stripe_width) % 2 == 0, dark, bright)
        grey = np.where(inside, stripes, grey)
        inside_any |= inside
    return grey, inside_any


def _drifting_tops(
    rng: np.random.Generator, config: ContextConfig, objects: list, frames: int, max_shift: int
) -> np.ndarray:
    """Top-left corners (T, n, 2) of objects doing a bounded random walk (clipped inside the image)."""
    start = np.array([top for top, _ in objects], dtype=np.int64).reshape(-1, 2)  # (n, 2)
    steps = rng.integers(-max_shift, max_shift + 1, size=(frames, len(objects), 2))
    steps[0] = 0
    tops = start[None] + np.cumsum(steps, axis=0)  # (T, n, 2)
    limits = np.array([config.image_size - size for _, size in objects])[None, :, None]  # (1, n, 1)
    return np.clip(tops, 0, limits)


def generate_context_clip(
    rng: np.random.Generator,
    config: ContextConfig,
    frames: int = 1,
    marker_frame: int = 0,
    max_shift: int = 0,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One sample: ``uint8`` images (T, S, S, 3), ``int64`` labels (T, S, S) and a description dict."""
    context_class = int(rng.integers(1, 4))
    marker, objects = _sample_layout(rng, config, drift=max_shift * (frames - 1))
    tops = _drifting_tops(rng, config, objects, frames, max_shift)
    object_grey, inside = _render_objects(rng, config, objects, tops)

    size_px = config.image_size
    level = rng.uniform(90, 160)
    background = level + rng.normal(0.0, config.noise_std, size=(frames, size_px, size_px))
    object_grey = object_grey + rng.normal(0.0, config.noise_std / 2, size=object_grey.shape)
    grey = np.where(inside, object_grey, background)
    image = np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)  # (T, S, S, 3)
    label = np.where(inside, context_class, 0).astype(np.int64)  # (T, S, S)

    (my, mx), m = marker, config.marker_size
    colour = np.array(CONTEXT_MARKER_COLOURS[context_class - 1], dtype=np.float64)
    marker_pixels = colour + rng.normal(0.0, config.noise_std / 2, size=(m, m, 3))
    image[marker_frame, my : my + m, mx : mx + m] = np.clip(np.rint(marker_pixels), 0, 255).astype(np.uint8)
    label[marker_frame, my : my + m, mx : mx + m] = context_class

    info = {
        "context_class": context_class,
        "marker_yx": (int(my), int(mx)),
        "object_boxes": [
            (int(top[0]), int(top[1]), size) for top, size in objects
        ],  # first frame (y, x, size)
    }
    return image, label, info


def _check_split(split: str) -> None:
    if split not in _SPLIT_STREAMS:
        raise ValueError(
            f"unknown split {split!r} for a procedural dataset; expected one of {tuple(_SPLIT_STREAMS)}"
        )


@register_dataset("context")
class ContextDataset(SegmentationDataset):
    """The built-in context task (images): see the module docstring for the rule.

    Args:
        split: "train", "val" or "test" (independent streams of the same task).
        length: number of samples (any size; default 8192 for train, 512 otherwise).
        seed: non-negative integer; (seed, split, index) fixes a sample.
        transforms: paired transforms (default: normalisation only).
        **config: :class:`ContextConfig` fields (image_size, num_objects, object_size, marker_size,
            min_marker_distance, marker_placement, noise_std).
    """

    meta = CONTEXT
    splits = tuple(_SPLIT_STREAMS)
    _variant = 0
    # what **config accepts (ccnet.data.dataset_options lists them with the named keyword arguments)
    extra_options = tuple(f.name for f in dataclasses.fields(ContextConfig))

    def __init__(
        self,
        split: str = "train",
        *,
        length: int | None = None,
        seed: int = 0,
        transforms: PairTransform | None = None,
        **config: Any,
    ) -> None:
        _check_split(split)
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        super().__init__(transforms)
        self.split, self.seed = split, int(seed)
        self.length = _DEFAULT_LENGTH[split] if length is None else int(length)
        self.config = ContextConfig(**config)
        size = self.config.image_size
        self.meta = dataclasses.replace(type(self).meta, crop_size=(size, size))

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(split={self.split!r}, length={self.length}, seed={self.seed}, {self.config})"

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, _SPLIT_STREAMS[self.split], index, self._variant])

    def generate(self, index: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """``uint8`` image (S, S, 3), ``int64`` label (S, S) and the layout (class, marker, object boxes)."""
        image, label, info = generate_context_clip(self._rng(index), self.config)
        return image[0], label[0], info

    def load_raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image, label, _ = self.generate(index)
        return image, label

    def sample_meta(self, index: int) -> dict[str, Any]:
        return self.load_with_meta(index)[2]

    def load_with_meta(self, index: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        image, label, info = self.generate(index)
        meta = {
            "dataset": self.name,
            "index": index,
            "image_path": None,
            "label_path": None,
            "has_label": True,
            "split": self.split,
            "seed": self.seed,
            **info,
        }
        return image, label, meta


@register_dataset("context_video")
class ContextVideoDataset(ContextDataset):
    """The context task over clips: the marker is in one frame, objects in all frames take its class.

    Extra args: ``clip_length`` T (default 4), ``marker_frame`` ("first", "random" or an int in 0..T-1),
    ``max_shift`` px of object motion per frame (default 1). Items: ``"image"`` (T, 3, S, S), ``"mask"``
    (T, S, S); ``meta["marker_frame"]`` says where the cue is.
    """

    meta = dataclasses.replace(CONTEXT, name="context_video")
    _variant = 1

    def __init__(
        self,
        split: str = "train",
        *,
        clip_length: int = 4,
        marker_frame: str | int = "random",
        max_shift: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(split, **kwargs)
        if clip_length < 1 or max_shift < 0:
            raise ValueError(f"need clip_length >= 1 and max_shift >= 0, got {clip_length}, {max_shift}")
        if not (
            marker_frame in ("first", "random")
            or (isinstance(marker_frame, int) and 0 <= marker_frame < clip_length)
        ):
            raise ValueError(
                f"marker_frame must be 'first', 'random' or in 0..{clip_length - 1}, got {marker_frame!r}"
            )
        self.clip_length, self.marker_frame, self.max_shift = clip_length, marker_frame, max_shift

    def generate(self, index: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """``uint8`` clip (T, S, S, 3), ``int64`` labels (T, S, S) and the layout incl. ``marker_frame``."""
        rng = self._rng(index)
        if self.marker_frame == "random":
            frame = int(rng.integers(self.clip_length))
        else:
            frame = 0 if self.marker_frame == "first" else int(self.marker_frame)
        images, labels, info = generate_context_clip(
            rng, self.config, self.clip_length, frame, self.max_shift
        )
        return images, labels, {**info, "marker_frame": frame}


def generate_handed_sample(
    rng: np.random.Generator,
    config: ContextConfig,
    *,
    bar_width: int = 4,
    bar_gap: int = 3,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One sample of the handed task (see the module docstring): ``uint8`` image (S, S, 3), ``int64`` label
    (S, S) and ``{"bar_x", "object_boxes"}``."""
    size_px = config.image_size
    bar_x = int(rng.integers(size_px // 4, 3 * size_px // 4 - bar_width + 1))
    wanted = int(rng.integers(config.num_objects[0], config.num_objects[1] + 1))
    objects: list[tuple[np.ndarray, int]] = []
    for _ in range(wanted):
        size = int(rng.integers(config.object_size[0], config.object_size[1] + 1))
        tops = rng.integers(0, size_px - size + 1, size=(_CANDIDATES, 2))  # (N, 2) y, x
        bar_distance = np.maximum(bar_x - (tops[:, 1] + size), tops[:, 1] - (bar_x + bar_width))
        ok = bar_distance >= bar_gap
        for top, other_size in objects:
            ok &= _axis_gaps(tops, size, top, other_size).max(axis=1) >= _OBJECT_GAP
        free = np.flatnonzero(ok)
        if free.size:
            objects.append((tops[free[0]], size))
    tops = np.array([top for top, _ in objects], dtype=np.int64).reshape(1, -1, 2)
    object_grey, rendered = _render_objects(rng, config, objects, tops)  # (1, S, S) each

    background = rng.uniform(90, 160) + rng.normal(0.0, config.noise_std, size=(size_px, size_px))
    object_grey = object_grey[0] + rng.normal(0.0, config.noise_std / 2, size=(size_px, size_px))
    grey = np.where(rendered[0], object_grey, background)
    label = np.zeros((size_px, size_px), dtype=np.int64)
    for top, size in objects:  # objects keep a gap, so an object's box holds its pixels only
        box = np.zeros((size_px, size_px), dtype=bool)
        box[top[0] : top[0] + size, top[1] : top[1] + size] = True
        label[box & rendered[0]] = 1 if top[1] + size / 2 < bar_x + bar_width / 2 else 2  # its centre's side
    image = np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    bar = np.array(CONTEXT_MARKER_COLOURS[0], dtype=np.float64)
    bar_pixels = bar + rng.normal(0.0, config.noise_std / 2, size=(size_px, bar_width, 3))
    image[:, bar_x : bar_x + bar_width] = np.clip(np.rint(bar_pixels), 0, 255).astype(np.uint8)
    label[:, bar_x : bar_x + bar_width] = 3
    info = {"bar_x": bar_x, "object_boxes": [(int(top[0]), int(top[1]), size) for top, size in objects]}
    return image, label, info


@register_dataset("handed")
class HandedDataset(ContextDataset):
    """The handed task (see the module docstring): classes background, left object, right object, body,
    with the flip pair (1, 2). Same arguments as :class:`ContextDataset` (``marker_size``,
    ``min_marker_distance`` and ``marker_placement`` are unused)."""

    meta = HANDED
    _variant = 2

    def generate(self, index: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """``uint8`` image (S, S, 3), ``int64`` label (S, S) and the layout (bar column, object boxes)."""
        return generate_handed_sample(self._rng(index), self.config)
