"""Reading images and label maps, turning every failure into a :class:`DatasetError` naming the file.

- :func:`read_image` -> ``uint8`` array ``(H, W, 3)`` RGB (grey, palette and CMYK files are converted).
- :func:`read_label` -> integer array ``(H, W)`` of the values stored in a single-channel PNG (for palette
  "P" PNGs such as VOC's these are the palette indices, not colours).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# PIL modes that hold one integer per pixel, i.e. a class index ("1" = bilevel, "P" = palette indices).
_INDEX_MODES = {"1", "L", "P", "I", "I;16", "I;16B", "I;16L"}


class DatasetError(ValueError):
    """A dataset copy is missing, laid out differently than expected, or holds a bad file.

    The message always names the file or directory and what is wrong with it.
    """


def _open_decoded(path: Path, what: str) -> Image.Image:
    if not path.is_file():
        raise DatasetError(f"{what} {path} does not exist")
    try:
        image = Image.open(path)
        image.load()  # decoding happens here; truncated files raise now rather than later
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(f"{what} {path} cannot be decoded (corrupt or truncated file): {error}") from error
    return image


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to ``uint8`` ``(H, W, 3)`` RGB, or raise :class:`DatasetError` naming it."""
    path = Path(path)
    with _open_decoded(path, "image") as image:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        return np.asarray(rgb, dtype=np.uint8)


def read_label(path: str | Path) -> np.ndarray:
    """Decode a single-channel class-index PNG to an integer ``(H, W)`` array (dtype as stored).

    Raises :class:`DatasetError` for unreadable files and for colour (RGB/RGBA) label images, which would
    otherwise be silently turned into wrong indices.
    """
    path = Path(path)
    with _open_decoded(path, "label") as label:
        if label.mode not in _INDEX_MODES:
            channels = len(label.getbands())
            raise DatasetError(
                f"label {path} is a {channels}-channel {label.mode} image; expected a single-channel "
                "class-index PNG (mode L or P). Colour-coded masks must be converted to class indices first."
            )
        array = np.asarray(label)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    return array


def list_files(
    directory: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES, recursive: bool = False
) -> list[Path]:
    """Sorted files in ``directory`` whose suffix (case-insensitive) is one of ``suffixes``; [] if missing."""
    if not directory.is_dir():
        return []
    candidates = directory.rglob("*") if recursive else directory.iterdir()
    return sorted(p for p in candidates if p.is_file() and p.suffix.lower() in suffixes)
