"""CamVid clips centred on the labelled frames (``camvid_clips``), the input of the video (3-D) model.

Item ``i`` is the clip around labelled frame ``i`` of the split (video order: by sequence, then frame
number), so evaluation sees every labelled frame exactly once::

    {"image": (T, 3, H, W),   # float32 normalised by the transforms (uint8 with a raw transform)
     "mask":  (T, H, W),      # int64, 255 = ignore; see ``labels`` below
     "meta":  {"dataset": "camvid_clips", "index": i, "sequence": "0001TP", "frame": 6690,
               "frames": [6688, ..., 6692], "image_paths": [...], "label_paths": [None, .., str, ..],
               "image_path": centre image, "label_path": centre label, "has_label": True,
               "centre": T // 2, "clip_source": "video" | "labelled", "ori_size": (H, W)}}

**Centre convention** (shared with the model): the labelled frame sits at clip index ``c = T // 2``; clip
index ``k`` holds the frame ``(k - c) * frame_step`` steps away. For even ``T`` there are ``T // 2`` frames
before the labelled one and ``T - 1 - T // 2`` after it (T=4: offsets -2, -1, 0, +1).

Where the frames come from:

- **Video mode** (``frames_root`` given): frames extracted from the CamVid videos, named like the labelled
  files, ``<sequence>_<frame>.png`` (or ``.jpg``), where ``<frame>`` is the video frame number used in the
  labelled file names (``0001TP_006690``, ``0006R0_f00930``, ``Seq05VD_f00930``: leading zeros and an
  ``f`` are allowed). They may lie directly in ``frames_root`` or in per-sequence subdirectories
  (``frames_root/0001TP/0001TP_006691.png``); the directory is searched recursively. The frames must have
  the size of the labelled images (the SegNet copy is 360x480, the videos 720x960), e.g.::

      ffmpeg -i <video of 0001TP> -vf scale=480:360 -start_number 0 frames/0001TP/0001TP_%06d.png

  Check the numbering once: the extracted frame with a labelled frame's number must show the labelled
  image (``-start_number`` shifts it). The clip holds frames ``f + (k - c) * frame_step`` of the labelled
  frame's sequence; frame numbers before the first / after the last extracted frame of that sequence are
  replaced by that end frame (padding by repetition). A frame missing strictly inside the extracted range
  is an error, as is a labelled frame outside it (wrong numbering or an incomplete extraction). A frame
  that has a label file in the split is read from the split's labelled image, so the centre frame is always
  the labelled image itself.
- **Labelled-only mode** (no ``frames_root``): the clip is built from the neighbouring labelled frames of
  the same sequence in the same split (previous / next by frame number, ``frame_step`` counts labelled
  frames), padded by repetition at the sequence ends. In CamVid these are ~1 s (30 video frames) apart, so
  the clip shows much larger motion than a real video clip; a warning says so.

``labels="centre"`` (default) labels only the centre frame (the others are all 255), which is what the
model is evaluated on; ``labels="all"`` also labels every other clip frame that has a label file in the
split (all of them in labelled-only mode, the padded repetitions of the centre frame included). Labels of
other splits are never read. Label values follow :class:`~ccnet.data.datasets.CamVid` (11 = void -> 255).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccnet.clips import centre_index
from ccnet.data.base import PairTransform, register_dataset
from ccnet.data.datasets import CamVid, _sequence_and_frame
from ccnet.data.files import DatasetError, list_files, read_image
from ccnet.data.meta import CAMVID

log = logging.getLogger(__name__)

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
LABEL_MODES = ("centre", "all")
CLIP_SOURCES = ("video", "labelled")
_SHOWN_ERRORS = 5


def clip_offsets(clip_length: int, frame_step: int = 1) -> list[int]:
    """Offset of each clip index from the labelled frame: ``(k - T // 2) * frame_step`` for k = 0..T-1."""
    centre = centre_index(clip_length)
    return [(k - centre) * frame_step for k in range(clip_length)]


@dataclass(frozen=True)
class ClipFrame:
    """One frame of a clip: video (or labelled) frame number, image file, and the index of its labelled
    sample in ``dataset.samples`` when the frame has a label file in the split (else ``None``)."""

    frame: int
    image: Path
    sample: int | None


def index_video_frames(frames_root: Path, sequences: set[str]) -> dict[str, dict[int, Path]]:
    """``{sequence: {frame number: path}}`` of the extracted frames of ``sequences`` under ``frames_root``.

    Files are found recursively (flat or per-sequence subdirectories); names that do not parse as
    ``<sequence>_<frame>`` of one of ``sequences`` are skipped. Two files for one frame are an error.
    """
    frames: dict[str, dict[int, Path]] = {}
    for path in list_files(frames_root, FRAME_SUFFIXES, recursive=True):
        sequence, number = _sequence_and_frame(path.stem)
        if sequence not in sequences or sequence == path.stem:
            continue
        found = frames.setdefault(sequence, {})
        if number in found:
            raise DatasetError(
                f"camvid_clips: {found[number]} and {path} are both frame {number} of sequence {sequence}; "
                "keep one of them"
            )
        found[number] = path
    return frames


@register_dataset("camvid_clips")
class CamVidClips(CamVid):
    """CamVid (SegNet copy) as clips of ``clip_length`` frames centred on each labelled frame.

    See the module docstring for the item layout, the centre convention (index ``T // 2``) and the two clip
    sources. All arguments but ``root`` and ``split`` are keyword-only; configs pass them as ``data.options``.

    Args:
        root: the SegNet CamVid copy (``<split>/`` and ``<split>annot/``), as for ``camvid``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        clip_length: frames per clip ``T`` (>= 1).
        frames_root: directory of frames extracted from the videos (video mode); ``None`` = labelled-only.
        frame_step: distance between clip frames, in video frames (video mode) or labelled frames.
        labels: ``"centre"`` (alias ``"center"``: only the labelled frame at ``T // 2``) or ``"all"`` (every
            frame with a label file in the split). Evaluate with ``"centre"`` (each labelled frame once).
        transforms: paired transform applied to the whole clip (every frame gets the same random draw).
        strict: ``False`` (``ccnet data check``) defers per-clip problems (missing frames) to loading.
    """

    meta = dataclasses.replace(CAMVID, name="camvid_clips")

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        clip_length: int = 5,
        frames_root: str | Path | None = None,
        frame_step: int = 1,
        labels: str = "centre",
        transforms: PairTransform | None = None,
        strict: bool = True,
    ) -> None:
        # argument errors first: they should not depend on what is on disk
        for name, value in (("clip_length", clip_length), ("frame_step", frame_step)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{self.meta.name}: {name} must be an integer >= 1, got {value!r}")
        labels = "centre" if labels == "center" else labels
        if labels not in LABEL_MODES:
            raise ValueError(f"{self.meta.name}: labels must be one of {LABEL_MODES}, got {labels!r}")
        frames_dir = None if frames_root is None else Path(frames_root).expanduser()
        if frames_dir is not None and not frames_dir.is_dir():
            raise DatasetError(
                f"{self.meta.name}: frames_root {frames_dir} is not a directory (expected frames extracted "
                "from the CamVid videos, named <sequence>_<frame>.png or .jpg)"
            )
        super().__init__(root, split, transforms=transforms, strict=strict)
        self.clip_length, self.frame_step, self.labels = clip_length, frame_step, labels
        self.centre = centre_index(clip_length)
        self.frames_root = frames_dir
        self.clip_source = "labelled" if frames_dir is None else "video"

        # samples are in video order, so each sequence's list is sorted by frame number
        self._members: dict[str, list[int]] = {}
        for index, sample in enumerate(self.samples):
            self._members.setdefault(sample.extra["sequence"], []).append(index)
        self._position = {i: p for members in self._members.values() for p, i in enumerate(members)}
        self._labelled = {(s.extra["sequence"], s.extra["frame"]): i for i, s in enumerate(self.samples)}

        if frames_dir is None:
            log.warning(
                "%s %s: no frames_root given, clips are built from neighbouring labelled frames (~1 s apart "
                "in the video), not consecutive video frames",
                self.name,
                split,
            )
            available = {sequence: len(members) for sequence, members in self._members.items()}
        else:
            self._video = index_video_frames(frames_dir, set(self._members))
            self._check_extracted(frames_dir)
            self._ranges = {sequence: (min(f), max(f)) for sequence, f in self._video.items()}
            available = {
                sequence: len(set(self._video[sequence]) | {self.samples[i].extra["frame"] for i in members})
                for sequence, members in self._members.items()
            }
        where = f"labelled in split {split!r}" if frames_dir is None else f"under {frames_dir}"
        for sequence, count in available.items():
            if count < clip_length:
                raise DatasetError(
                    f"{self.name}: clip_length {clip_length} is longer than sequence {sequence} ({count} "
                    f"frames {where})"
                )
        if strict:
            self._check_clips()

    def _check_extracted(self, frames_dir: Path) -> None:
        missing = sorted(set(self._members) - set(self._video))
        if missing:
            raise DatasetError(
                f"{self.name}: no extracted frames of sequence(s) {', '.join(missing)} under frames_root "
                f"{frames_dir} (expected files named <sequence>_<frame>.png or .jpg, e.g. "
                f"{missing[0]}_006690.png, directly in it or in {missing[0]}/)"
            )

    def _check_clips(self) -> None:
        errors = []
        for index in range(len(self)):
            try:
                self.clip(index)
            except DatasetError as error:
                errors.append(str(error))
        if errors:
            more = f"\n  ... and {len(errors) - _SHOWN_ERRORS} more" if len(errors) > _SHOWN_ERRORS else ""
            raise DatasetError(
                f"{self.name} {self.split}: {len(errors)} of {len(self)} clips cannot be built:\n  "
                + "\n  ".join(errors[:_SHOWN_ERRORS])
                + more
            )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"clip_length={self.clip_length}, frame_step={self.frame_step}, "
            f"clip_source={self.clip_source!r}, labels={self.labels!r}, {len(self)} clips)"
        )

    def clip(self, index: int) -> list[ClipFrame]:
        """The ``clip_length`` frames of clip ``index`` (labelled frame at :attr:`centre`), padded by
        repetition at the sequence ends; raises :class:`DatasetError` for a frame missing inside a
        sequence's extracted range."""
        sample = self.samples[index]
        sequence, frame = sample.extra["sequence"], sample.extra["frame"]
        offsets = clip_offsets(self.clip_length, self.frame_step)
        if self.frames_root is None:
            members, position = self._members[sequence], self._position[index]
            picked = [members[min(max(position + offset, 0), len(members) - 1)] for offset in offsets]
            return [ClipFrame(self.samples[j].extra["frame"], self.samples[j].image, j) for j in picked]

        first, last = self._ranges[sequence]
        if not first <= frame <= last:
            raise DatasetError(
                f"{self.name}: labelled frame {sample.image} (frame {frame} of sequence {sequence}) lies "
                f"outside the extracted frames {first}..{last} of {sequence} under {self.frames_root}; "
                "extract the whole video and check that the frame numbers match the labelled file names"
            )
        extracted = self._video[sequence]
        frames = []
        for offset in offsets:
            number = min(max(frame + offset, first), last)
            labelled = self._labelled.get((sequence, number))
            if labelled is not None:  # the split's labelled image, so image and label always agree
                frames.append(ClipFrame(number, self.samples[labelled].image, labelled))
            elif number in extracted:
                frames.append(ClipFrame(number, extracted[number], None))
            else:
                looked_for = " or ".join(str(p) for p in self._expected_paths(sequence, number))
                raise DatasetError(
                    f"{self.name}: video frame {number} of sequence {sequence} is missing (looked for "
                    f"{looked_for}); it lies inside the extracted frames {first}..{last} of {sequence}, and "
                    f"the clip of {sample.image} needs it"
                )
        return frames

    def _expected_paths(self, sequence: str, number: int) -> list[Path]:
        """Where frame ``number`` would be, named like the nearest extracted frame before it."""
        extracted = self._video[sequence]
        neighbour = extracted[max(f for f in extracted if f < number)]
        stem = neighbour.stem
        digits = len(stem) - len(stem.rstrip("0123456789"))
        name = f"{stem[: len(stem) - digits]}{number:0{digits}d}"
        suffixes = [neighbour.suffix] + [s for s in (".png", ".jpg") if s != neighbour.suffix.lower()]
        return [neighbour.with_name(name + suffix) for suffix in suffixes]

    def _is_labelled(self, k: int, frame: ClipFrame) -> bool:
        return frame.sample is not None and (k == self.centre or self.labels == "all")

    def load_raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``uint8`` ``(T, H, W, 3)`` clip and ``int64`` ``(T, H, W)`` training ids (255 where unlabelled)."""
        frames = self.clip(index)
        loaded: dict[tuple[Path, bool], tuple[np.ndarray, np.ndarray | None]] = {}  # padding repeats frames
        pairs = []
        for k, frame in enumerate(frames):
            key = (frame.image, self._is_labelled(k, frame))
            if key not in loaded:
                if key[1]:
                    assert frame.sample is not None
                    loaded[key] = super().load_raw(frame.sample)  # CamVid's reading, size check and void
                else:
                    loaded[key] = (read_image(frame.image), None)
            pairs.append(loaded[key])
        sizes = {image.shape[:2] for image, _ in pairs}
        if len(sizes) > 1:
            listed = ", ".join(
                f"{f.image} is {image.shape[0]}x{image.shape[1]}"
                for f, (image, _) in zip(frames, pairs, strict=True)
            )
            raise DatasetError(
                f"{self.name}: the frames of the clip of {self.samples[index].image} differ in size: "
                f"{listed}; "
                "extracted video frames must be resized to the labelled images' size (e.g. ffmpeg -vf "
                "scale=480:360 for the SegNet copy)"
            )
        height, width = sizes.pop()
        images = np.stack([image for image, _ in pairs])
        labels = np.stack(
            [
                label if label is not None else np.full((height, width), self.ignore_index, dtype=np.int64)
                for _, label in pairs
            ]
        )
        return images, labels

    def sample_meta(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        frames = self.clip(index)
        return {
            "dataset": self.name,
            "index": index,
            "sequence": sample.extra["sequence"],
            "frame": sample.extra["frame"],
            "frames": [f.frame for f in frames],
            "image_path": str(sample.image),
            "image_paths": [str(f.image) for f in frames],
            "label_path": None if sample.label is None else str(sample.label),
            "label_paths": [
                str(self.samples[f.sample].label)
                if f.sample is not None and self._is_labelled(k, f)
                else None
                for k, f in enumerate(frames)
            ],
            "has_label": sample.label is not None,
            "centre": self.centre,
            "clip_source": self.clip_source,
        }
