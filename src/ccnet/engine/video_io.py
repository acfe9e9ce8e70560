"""Video files in and out, frame by frame (PyAV): decoding to RGB frames and writing H.264 MP4 files.

Frames are streamed: :func:`read_video` yields one (H, W, 3) uint8 frame at a time and
:class:`VideoWriter` encodes each frame as it comes, so memory does not grow with the video's length.
The output keeps the input's frame rate (a fraction, e.g. 30000/1001). H.264 in yuv420p (what browsers
play) needs even sizes: an odd height or width is padded by repeating the last row or column.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import numpy as np

from ccnet.data import DatasetError

__all__ = ["VIDEO_SUFFIXES", "VideoInfo", "VideoWriter", "is_video", "probe_video", "read_video"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def is_video(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a video file by its suffix (:data:`VIDEO_SUFFIXES`, any case)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoInfo:
    """``fps``: frames per second (exact fraction); ``frames``: the count the container states (0 when it
    does not say); ``height``, ``width``: the frame size."""

    fps: Fraction
    frames: int
    height: int
    width: int


def _av():
    """PyAV, or an error saying how to install it."""
    try:
        import av
    except ImportError as err:
        raise DatasetError("video files need PyAV: pip install 'ccnet[video]'") from err
    return av


def _open(path: Path):  # -> av.container.InputContainer
    av = _av()
    if not path.is_file():
        raise DatasetError(f"{path}: no such video file")
    if path.stat().st_size == 0:
        raise DatasetError(f"{path}: empty file (0 bytes), not a video")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: not a readable video ({err})") from err
    if not container.streams.video:
        container.close()
        raise DatasetError(f"{path}: holds no video stream")
    return container


def _info(stream) -> VideoInfo:
    fps = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not fps:
        raise DatasetError(f"video stream {stream}: no frame rate")
    return VideoInfo(
        Fraction(fps), int(stream.frames or 0), stream.codec_context.height, stream.codec_context.width
    )


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame rate, stated frame count and size of the video at ``path``, without decoding it.

    Raises:
        DatasetError: a missing, empty or unreadable file, or one without a video stream (named).
    """
    path = Path(path)
    with _open(path) as container:
        return _info(container.streams.video[0])


def read_video(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """The frames of the video at ``path`` as (H, W, 3) uint8 RGB arrays, decoded one at a time.

    Raises:
        DatasetError: (on first use) a missing, empty or unreadable file, or a decoding error mid-way.
    """
    av = _av()
    path = Path(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as err:
            raise DatasetError(f"{path}: cannot decode the video ({err})") from err


def _even(frame: np.ndarray) -> np.ndarray:
    """``frame`` padded to even height and width by repeating its last row / column (yuv420p needs it)."""
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frame


class VideoWriter:
    """Writes (H, W, 3) uint8 RGB frames to an H.264 MP4 file at ``fps`` frames per second.

    Use as a context manager (the file is finished on exit); every frame must have the first frame's size.

    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "out.mp4")
    >>> with VideoWriter(path, fps=25) as writer:
    ...     for t in range(5):
    ...         writer.write(np.full((32, 48, 3), 40 * t, dtype=np.uint8))
    >>> probe_video(path)
    VideoInfo(fps=Fraction(25, 1), frames=5, height=32, width=48)
    """

    def __init__(self, path: str | os.PathLike, fps: Fraction | float, *, quality: int = 20) -> None:
        av = _av()
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1_000_000)
        self.frames = 0
        self._container = av.open(str(self.path), "w")
        self._stream = self._container.add_stream("libx264", rate=self.fps)
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(quality)}  # constant quality: lower = better and bigger

    def write(self, frame: np.ndarray) -> None:
        """Encode one (H, W, 3) uint8 RGB frame."""
        import av

        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"{self.path}: frames must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
        frame = _even(frame)
        if self.frames == 0:
            self._stream.height, self._stream.width = frame.shape[:2]
        elif frame.shape[:2] != (self._stream.height, self._stream.width):
            raise ValueError(
                f"{self.path}: frame {self.frames} is {frame.shape[1]}x{frame.shape[0]}, the video "
                f"{self._stream.width}x{self._stream.height}"
            )
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (idempotent)."""
        if self._container is None:
            return
        try:
            if self.frames:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
