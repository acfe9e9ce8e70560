"""Small COCO-format trees written by the tests: 32x48 images with a polygon, an uncompressed RLE, a
compressed RLE and a crowd region, and an image without instances.

Category ids are 3 "cat", 7 "dog", 90 "zebra" (contiguous labels 1, 2, 3) so that the id remapping is
visible. :data:`EXPECTED` lists what the dataset must return for each image: the non-crowd instances as
(label, box XYXY, mask) in annotation order, the masks built here from rectangles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 32, 48
CATEGORIES = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}, {"id": 90, "name": "zebra"}]
LABEL_OF_CATEGORY = {3: 1, 7: 2, 90: 3}


def rectangle(y0: int, x0: int, y1: int, x1: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """``uint8`` ``(height, width)`` mask with rows ``y0:y1`` and columns ``x0:x1`` set."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's uncompressed RLE, from its definition: run lengths of the column-major pixels, the first run
    counting zeros (0 when the first pixel is set)."""
    flat = mask.T.reshape(-1).astype(np.int64)  # column-major order
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel == value:
            run += 1
        else:
            counts.append(run)
            value, run = pixel, 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def compressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's compressed RLE (``counts`` a string), as in the JSON files (pycocotools' own encoder)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def box_of(mask: np.ndarray) -> list[float]:
    """Tight ``[x, y, w, h]`` of a mask's set pixels (pixel (r, c) covers [c, c+1) x [r, r+1))."""
    rows, cols = np.nonzero(mask)
    return [float(cols.min()), float(rows.min()), float(cols.max() + 1 - cols.min()),
            float(rows.max() + 1 - rows.min())]  # fmt: skip


def xyxy(box: list[float]) -> list[float]:
    x, y, w, h = box
    return [x, y, x + w, y + h]


# Image 1: a polygon cat (a 10x10 square with corners on pixel edges), an uncompressed-RLE dog and a crowd
# region of cats (compressed RLE). Image 2: a compressed-RLE zebra. Image 3: no instances.
POLYGON = [4.0, 2.0, 14.0, 2.0, 14.0, 12.0, 4.0, 12.0]  # x, y pairs: columns 4..14, rows 2..12
DOG = rectangle(16, 20, 28, 30)
CROWD = rectangle(0, 36, 32, 48)
ZEBRA = rectangle(5, 5, 25, 40)


def annotations() -> dict[str, Any]:
    """The instances JSON as a dict (fresh each call, so tests may break it)."""
    images = [
        {"id": 1, "file_name": "000001.png", "height": HEIGHT, "width": WIDTH},
        {"id": 2, "file_name": "000002.png", "height": HEIGHT, "width": WIDTH},
        {"id": 3, "file_name": "000003.png", "height": HEIGHT, "width": WIDTH},
    ]
    anns = [
        {"id": 10, "image_id": 1, "category_id": 3, "segmentation": [POLYGON], "area": 100.0,
         "bbox": [4.0, 2.0, 10.0, 10.0], "iscrowd": 0},
        {"id": 11, "image_id": 1, "category_id": 7, "segmentation": uncompressed_rle(DOG),
         "area": float(DOG.sum()), "bbox": box_of(DOG), "iscrowd": 0},
        {"id": 12, "image_id": 1, "category_id": 3, "segmentation": compressed_rle(CROWD),
         "area": float(CROWD.sum()), "bbox": box_of(CROWD), "iscrowd": 1},
        {"id": 20, "image_id": 2, "category_id": 90, "segmentation": compressed_rle(ZEBRA),
         "area": float(ZEBRA.sum()), "bbox": box_of(ZEBRA), "iscrowd": 0},
    ]  # fmt: skip
    return {"images": images, "annotations": anns, "categories": [dict(c) for c in CATEGORIES]}


# image id -> [(label, box XYXY, mask)] of the non-crowd instances; the polygon's mask is checked apart
EXPECTED = {
    1: [(1, [4.0, 2.0, 14.0, 12.0], None), (2, xyxy(box_of(DOG)), DOG)],
    2: [(3, xyxy(box_of(ZEBRA)), ZEBRA)],
    3: [],
}


def image_pixels(image_id: int) -> np.ndarray:
    """The ``uint8`` ``(H, W, 3)`` content of image ``image_id``: a gradient, different per image."""
    rows = np.arange(HEIGHT)[:, None, None] * 4
    cols = np.arange(WIDTH)[None, :, None] * 3
    return np.broadcast_to((rows + cols + image_id * 40) % 256, (HEIGHT, WIDTH, 3)).astype(np.uint8).copy()


def write_coco(ann_file: Path, image_dir: Path, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``data`` (default :func:`annotations`) to ``ann_file`` and its images into ``image_dir``."""
    data = annotations() if data is None else data
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    image_dir.mkdir(parents=True, exist_ok=True)
    ann_file.write_text(json.dumps(data))
    for image in data["images"]:
        path = image_dir / image["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image_pixels(image["id"])).save(path)
    return data


def make_coco2017(root: Path, split: str = "val") -> Path:
    """The official layout: ``root/annotations/instances_{split}2017.json`` and ``root/{split}2017/``."""
    write_coco(root / "annotations" / f"instances_{split}2017.json", root / f"{split}2017")
    return root
