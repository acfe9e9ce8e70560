"""Prediction on image files: input expansion (files, folders, globs), label PNGs and overlays.

For each input image ``<stem>.<ext>`` the output folder receives ``<stem>.png``, the labels as a palette PNG
(pixel value = class index, colours from the dataset palette), and ``<stem>_overlay.png``, the label colours
blended over the image. Unreadable inputs are reported and skipped; the others are still written.

With a video model the inputs, in the given order, are the frames of one video: each frame is segmented
as the centre of a clip of the model's ``clip_length`` frames around it (the first and last frames repeated
where the clip runs past the ends), so every frame gets the same temporal context as in evaluation.

Video files (:data:`~ccnet.engine.video_io.VIDEO_SUFFIXES`) go through :func:`predict_video`: decoded frame
by frame, segmented (a video model with the clip of each frame's neighbours, as above) and written as
``<stem>_overlay.mp4`` at the input's frame rate, optionally with the label PNG of every frame in
``<stem>_labels/``. Frames are streamed: memory does not grow with the video's length.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ccnet.clips import centre_index
from ccnet.data import DatasetError, read_image
from ccnet.data.files import IMAGE_SUFFIXES
from ccnet.engine.inference import Segmenter
from ccnet.engine.video_io import VideoWriter, probe_video, read_video

__all__ = [
    "OutputPathError",
    "PredictReport",
    "check_output_file",
    "check_output_folder",
    "colorize",
    "expand_inputs",
    "overlay",
    "predict_files",
    "predict_video",
    "segment_frames",
]


class OutputPathError(ValueError):
    """An output folder or file that cannot be written (a file in the way, no permission, an input)."""


def _writable_ancestor(path: Path, option: str) -> None:
    """The nearest existing folder of ``path`` must be a writable folder (the rest is created)."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputPathError(f"{option} {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise OutputPathError(f"{option} {path}: folder {parent} is not writable")
            return


def check_output_folder(path: str | os.PathLike, option: str = "--out") -> Path:
    """``path`` as an output folder, checked before any work is done: an existing writable folder, or a
    path that can be created (nothing is created here).

    Raises:
        OutputPathError: naming ``option`` and the file or folder in the way.
    """
    path = Path(path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise OutputPathError(f"{option} {path}: is a file, not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputPathError(f"{option} {path}: folder is not writable")
        return path
    _writable_ancestor(path, option)
    return path


def check_output_file(
    path: str | os.PathLike,
    *,
    inputs: Sequence[str | os.PathLike] = (),
    force: bool = False,
    option: str = "output",
) -> Path:
    """``path`` as a new output file, checked before any work: not one of ``inputs`` (a command must not
    overwrite what it reads), not an existing file unless ``force``, never a folder, in a writable folder.

    Raises:
        OutputPathError: naming the file and the reason.
    """
    path = Path(path).expanduser()
    for item in inputs:
        source = Path(item).expanduser()
        if source.exists() and path.exists() and os.path.samefile(source, path):
            raise OutputPathError(f"{option} {path} is also the input {item}; write to another file")
    if path.is_dir():
        raise OutputPathError(f"{option} {path} is a folder; give a file name")
    if path.exists():
        if not force:
            raise OutputPathError(f"{option} {path} exists; pass --force to overwrite it")
        if not os.access(path, os.W_OK):
            raise OutputPathError(f"{option} {path} is not writable")
        return path
    _writable_ancestor(path, option)
    return path


_GLOB_CHARS = set("*?[")


@dataclass
class PredictReport:
    """``written``: (input, label PNG) pairs; ``failed``: (input, reason) for inputs that were skipped."""

    written: list[tuple[Path, Path]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def expand_inputs(inputs: Sequence[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files named by ``inputs`` (files, folders = their image files, sorted, or glob patterns) and
    (input, reason) for inputs that name nothing. Duplicates are dropped, the order is kept."""
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                problems.append((item, f"folder holds no image files ({', '.join(IMAGE_SUFFIXES)})"))
            files += found
        elif path.is_file():
            files.append(path)
        elif _GLOB_CHARS & set(item):
            found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
            if not found:
                problems.append((item, "pattern matches no file"))
            files += found
        else:
            problems.append((item, "no such file or folder"))
    return list(dict.fromkeys(files)), problems


def colorize(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> Image.Image:
    """(H, W) class indices -> palette ("P") image; values are kept, colours come from ``palette``."""
    image = Image.fromarray(labels.astype(np.uint8))
    image.putpalette([v for colour in palette for v in colour])
    return image


def overlay(
    image: np.ndarray, labels: np.ndarray, palette: Sequence[Sequence[int]], alpha: float = 0.5
) -> Image.Image:
    """(H, W, 3) uint8 image blended with the label colours: ``(1 - alpha) * image + alpha * colour``."""
    colours = np.asarray(palette, dtype=np.float32)[np.clip(labels, 0, len(palette) - 1)]  # (H, W, 3)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, n = path.stem, 1
    while stem in used:  # same file name from different folders
        n += 1
        stem = f"{path.stem}_{n}"
    used.add(stem)
    return stem


def predict_files(
    segmenter: Segmenter,
    files: Sequence[Path],
    out_dir: str | Path,
    palette: Sequence[Sequence[int]],
    *,
    with_overlay: bool = True,
    alpha: float = 0.5,
    progress: bool = True,
) -> PredictReport:
    """Segment each file and write its label PNG (and overlay) into ``out_dir`` (see the module docstring).

    Raises:
        OutputPathError: ``out_dir`` is a file, lies under one, or is not writable (checked first).
    """
    out_dir = check_output_folder(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report, used = PredictReport(), set()
    frames = _readable(tqdm(files, desc="predict", unit="img", disable=not progress), report)
    segmented = _segment_video(segmenter, frames) if segmenter.video else _segment_images(segmenter, frames)
    for path, image, labels in segmented:
        stem = _unique_stem(path, used)
        label_path = out_dir / f"{stem}.png"
        colorize(labels, palette).save(label_path)
        if with_overlay:
            overlay(image, labels, palette, alpha).save(out_dir / f"{stem}_overlay.png")
        report.written.append((path, label_path))
    return report


def _readable(files: Iterator[Path], report: PredictReport) -> Iterator[tuple[Path, np.ndarray]]:
    """(path, (H, W, 3) uint8 image) of each readable file; the others go to ``report.failed``."""
    for path in files:
        try:
            yield path, read_image(path)
        except DatasetError as err:
            report.failed.append((str(path), str(err)))


def _segment_images(
    segmenter: Segmenter, frames: Iterator[tuple[Hashable, np.ndarray]]
) -> Iterator[tuple[Hashable, np.ndarray, np.ndarray]]:
    for key, image in frames:
        yield key, image, segmenter.predict(image).numpy()


def _segment_video(
    segmenter: Segmenter, frames: Iterator[tuple[Hashable, np.ndarray]]
) -> Iterator[tuple[Hashable, np.ndarray, np.ndarray]]:
    """(key, frame, labels) of each (key, frame): the frame as the centre of a clip of its neighbours;
    holds only ``clip_length`` frames at a time."""
    length = segmenter.model.clip_length
    centre = centre_index(length)
    kept: list[tuple[Hashable, np.ndarray]] = []  # frames base, base + 1, ... still needed
    base = done = 0

    def segment(index: int, last: int) -> tuple[Hashable, np.ndarray, np.ndarray]:
        clip = [kept[min(max(index + k - centre, 0), last) - base][1] for k in range(length)]
        labels = segmenter.predict(np.stack(clip)).numpy()
        path, image = kept[index - base]
        return path, image, labels[centre] if labels.ndim == 3 else labels

    for frame in frames:
        kept.append(frame)
        seen = base + len(kept)
        while done + length - 1 - centre < seen:  # the clip's last frame has been read
            yield segment(done, seen - 1)
            done += 1
            drop = max(0, done - centre - base)
            del kept[:drop]
            base += drop
    total = base + len(kept)
    while done < total:
        yield segment(done, total - 1)
        done += 1


def segment_frames(
    segmenter: Segmenter, frames: Iterator[tuple[Hashable, np.ndarray]]
) -> Iterator[tuple[Hashable, np.ndarray, np.ndarray]]:
    """(key, frame, labels (H, W)) for each (key, (H, W, 3) uint8 frame) of one video, in order, lazily:
    a 2-D model segments each frame alone, a video model each frame as the centre of its clip."""
    return _segment_video(segmenter, frames) if segmenter.video else _segment_images(segmenter, frames)


def predict_video(
    segmenter: Segmenter,
    path: str | os.PathLike,
    out_dir: str | Path,
    palette: Sequence[Sequence[int]],
    *,
    with_overlay: bool = True,
    label_frames: bool = False,
    alpha: float = 0.5,
    progress: bool = True,
    stem: str | None = None,
) -> tuple[Path | None, int]:
    """Segment every frame of the video ``path`` and write ``<stem>_overlay.mp4`` (the input's frame rate)
    and, with ``label_frames``, ``<stem>_labels/<frame:06d>.png`` (palette PNGs) into ``out_dir``.

    Returns (the overlay video or None, the number of frames). Streams: one frame (a video model: one
    clip) in memory at a time.

    Raises:
        DatasetError: a missing, empty or unreadable video (named); nothing is written then.
        OutputPathError: ``out_dir`` cannot be written.
    """
    path = Path(path)
    info = probe_video(path)  # unreadable files fail here, before any output exists
    out_dir = check_output_folder(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or path.stem
    labels_dir = out_dir / f"{stem}_labels"
    if label_frames:
        labels_dir.mkdir(exist_ok=True)
    video = out_dir / f"{stem}_overlay.mp4"
    bar = tqdm(total=info.frames or None, desc=path.name, unit="frame", disable=not progress)
    frames = enumerate(read_video(path))
    count = 0
    with bar, VideoWriter(video, info.fps) if with_overlay else contextlib.nullcontext() as writer:
        for index, image, labels in segment_frames(segmenter, frames):
            if with_overlay:
                writer.write(np.asarray(overlay(image, labels, palette, alpha)))
            if label_frames:
                colorize(labels, palette).save(labels_dir / f"{index:06d}.png")
            count += 1
            bar.update()
    if count == 0:
        raise DatasetError(f"{path}: the video holds no frames")
    return (video if with_overlay else None), count
