"""Reading images and label maps, turning every failure into a :class:`DatasetError` naming the file.

- :func:`read_image` -> ``uint8`` array ``(H, W, 3)`` RGB (grey, palette and CMYK files are converted;
  16-bit files are scaled to 8 bits, ``v * 255 / 65535``; 32-bit integer or float pixels are accepted only
  when they already hold 0..255 integers, since their range is unknown).
- :func:`read_label` -> integer array ``(H, W)`` of the values stored in a single-channel PNG (for palette
  "P" PNGs such as VOC's these are the palette indices, not colours).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# PIL modes that hold one integer per pixel, i.e. a class index ("1" = bilevel, "P" = palette indices).
_INDEX_MODES = {"1", "L", "P", "I", "I;16", "I;16B", "I;16L"}

# PIL modes of 16-bit single-channel images (16-bit grey PNG/TIFF). PIL itself reduces 16-bit RGB files to
# 8 bits, but converting these modes to RGB clips every value above 255 to 255 instead of scaling it.
SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}
# 32-bit integer / float pixels: no known range, so they must already hold 8-bit values.
_WIDE_MODES = {"I", "F"}


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
    """Decode an image file to ``uint8`` ``(H, W, 3)`` RGB, or raise :class:`DatasetError` naming it.

    16-bit grey images are scaled to 8 bits (``round(v * 255 / 65535)``); 32-bit integer or float images
    must hold integers in 0..255 (anything else is refused: their intended range is unknown).
    """
    path = Path(path)
    with _open_decoded(path, "image") as image:
        if image.mode in SIXTEEN_BIT_MODES:
            return _grey_to_rgb(scale_16_to_8_bits(np.asarray(image)))
        if image.mode in _WIDE_MODES:
            return _grey_to_rgb(_wide_to_8_bits(np.asarray(image), path, image.mode))
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        return np.asarray(rgb, dtype=np.uint8)


def image_bit_depth(path: str | Path) -> int:
    """Bits per channel of an image file as stored, from its header (8 for ordinary images, 16 for 16-bit
    grey files, 32 for 32-bit integer / float ones); 8 for files PIL cannot open (reported elsewhere)."""
    try:
        with Image.open(path) as image:
            mode = image.mode
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return 8
    return 16 if mode in SIXTEEN_BIT_MODES else 32 if mode in _WIDE_MODES else 8


def scale_16_to_8_bits(values: np.ndarray) -> np.ndarray:
    """``uint16`` values -> ``uint8``, ``round(v * 255 / 65535)`` (0 -> 0, 65535 -> 255)."""
    wide = values.astype(np.uint32)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _wide_to_8_bits(values: np.ndarray, path: Path, mode: str) -> np.ndarray:
    kind = "float" if mode == "F" else "32-bit integer"
    finite = np.isfinite(values).all() if values.size else True
    low, high = (values.min(), values.max()) if values.size and finite else (0, 0)
    if not finite or low < 0 or high > 255 or (mode == "F" and not np.array_equal(values, np.round(values))):
        shown = "non-finite values" if not finite else f"values {low:g}..{high:g}"
        raise DatasetError(
            f"image {path} has {kind} pixels ({shown}) of unknown range; convert it to an 8-bit (or 16-bit) "
            "image"
        )
    return values.astype(np.uint8)


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1))


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
    """Sorted files in ``directory`` whose suffix (case-insensitive) is one of ``suffixes``; [] if missing.

    Raises :class:`DatasetError` naming a matching symbolic link whose target does not exist (a copy made
    with links to a moved dataset would otherwise lose those samples silently).
    """
    if not directory.is_dir():
        return []
    candidates = directory.rglob("*") if recursive else directory.iterdir()
    files = []
    for path in candidates:
        if path.suffix.lower() not in suffixes:
            continue
        if path.is_symlink() and not path.exists():
            raise DatasetError(
                f"{path} is a broken symbolic link: its target {os.readlink(path)} does not exist"
            )
        if path.is_file():
            files.append(path)
    return sorted(files)
