"""Tiny fake dataset trees in the official layouts, with labels whose training ids are known by hand.

Every image is 32x64 (H x W). Label images are vertical stripes: ``stripes([a, b, ...])`` gives stripe ``i``
the stored value ``values[i]``; the expected training ids are written out by hand next to each tree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

H, W = 32, 64


def stripes(values: list[int], height: int = H, width: int = W) -> np.ndarray:
    """``uint8`` (height, width): ``len(values)`` equal-width vertical stripes holding ``values``."""
    columns = np.repeat(np.asarray(values, dtype=np.uint8), width // len(values))
    return np.tile(columns, (height, 1))


def write_image(path: Path, seed: int = 0, height: int = H, width: int = W) -> np.ndarray:
    """A random RGB image (PNG or JPEG by suffix); returns the pixels written."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def write_label(path: Path, values: np.ndarray, mode: str = "L") -> None:
    """A single-channel label PNG; ``mode="P"`` writes a palette PNG (VOC style) storing the indices."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(values.astype(np.uint8))  # mode "L"
    if mode == "P":
        # putpalette turns an L image into a P image with the same stored indices
        image.putpalette([c for i in range(256) for c in (i, 255 - i, (7 * i) % 256)])
        assert image.mode == "P"
    image.save(path)


# --- Cityscapes: stored labelIds and the trainIds expected for them --------------------------------------
CITYSCAPES_FRAMES = [
    "aachen/aachen_000000_000019",
    "aachen/aachen_000001_000019",
    "bochum/bochum_000000_000313",
]
CITYSCAPES_LABEL_IDS = [
    [7, 8, 26, 33, 0, 1, 4, 23],
    [11, 12, 13, 17, 19, 20, 21, 22],
    [24, 25, 27, 28, 31, 32, 6, 5],
]
CITYSCAPES_TRAIN_IDS = [
    [0, 1, 13, 18, 255, 255, 255, 10],
    [2, 3, 4, 5, 6, 7, 8, 9],
    [11, 12, 14, 15, 16, 17, 255, 255],
]


def make_cityscapes(root: Path, split: str = "val") -> Path:
    for k, (frame, ids) in enumerate(zip(CITYSCAPES_FRAMES, CITYSCAPES_LABEL_IDS, strict=True)):
        write_image(root / "leftImg8bit" / split / f"{frame}_leftImg8bit.png", seed=k)
        write_label(root / "gtFine" / split / f"{frame}_gtFine_labelIds.png", stripes(ids))
    return root


# --- ADE20K: reduce_zero_label ------------------------------------------------------------------------
ADE_STORED = [[0, 1, 2, 150, 75, 255, 0, 1], [3, 3, 3, 3, 4, 4, 4, 4]]
ADE_TRAIN_IDS = [[255, 0, 1, 149, 74, 255, 255, 0], [2, 2, 2, 2, 3, 3, 3, 3]]


def make_ade20k(root: Path, split: str = "validation") -> Path:
    """``root`` is the parent of ADEChallengeData2016 (the loader accepts both)."""
    base = root / "ADEChallengeData2016"
    for k, stored in enumerate(ADE_STORED):
        name = f"ADE_{split[:3]}_{k + 1:08d}"
        write_image(base / "images" / split / f"{name}.jpg", seed=k)
        write_label(base / "annotations" / split / f"{name}.png", stripes(stored))
    return root


# --- Pascal VOC 2012 + SBD aug ----------------------------------------------------------------------
VOC_IDS = ["2007_000032", "2007_000039", "2008_000123"]
VOC_STORED = [[0, 1, 15, 20, 255, 0, 7, 7], [0, 0, 0, 0, 12, 12, 255, 255], [3, 4, 5, 6, 8, 9, 10, 11]]


def make_voc(root: Path) -> Path:
    """``root``/VOCdevkit/VOC2012 with palette labels (SegmentationClass) and grey aug labels."""
    base = root / "VOCdevkit" / "VOC2012"
    for k, (image_id, stored) in enumerate(zip(VOC_IDS, VOC_STORED, strict=True)):
        write_image(base / "JPEGImages" / f"{image_id}.jpg", seed=k)
        write_label(base / "SegmentationClass" / f"{image_id}.png", stripes(stored), mode="P")
        write_label(base / "SegmentationClassAug" / f"{image_id}.png", stripes(stored), mode="L")
    lists = base / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text(f"{VOC_IDS[0]}\n{VOC_IDS[2]}\n")
    (lists / "val.txt").write_text(f"{VOC_IDS[1]}\n")
    # the DeepLab-style aug list: "image label" pairs per line
    (lists / "aug.txt").write_text(
        "".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in VOC_IDS)
    )
    return root


# --- LIP ------------------------------------------------------------------------------------------
LIP_STORED = [[0, 1, 2, 5, 13, 19, 18, 0], [14, 15, 16, 17, 255, 255, 0, 0]]


def make_lip(root: Path, split: str = "train") -> Path:
    for k, stored in enumerate(LIP_STORED):
        name = f"{k + 100}_{k * 7 + 3}"
        write_image(root / "TrainVal_images" / f"{split}_images" / f"{name}.jpg", seed=k)
        write_label(
            root / "TrainVal_parsing_annotations" / f"{split}_segmentations" / f"{name}.png", stripes(stored)
        )
    return root


def make_lip_flat(root: Path) -> Path:
    """CE2P's flat layout: train/val images and segmentations, a ``train_id.txt`` list (leaving one image
    out on purpose)."""
    for split in ("train", "val"):
        for k, stored in enumerate(LIP_STORED):
            write_image(root / f"{split}_images" / f"{split}{k}.jpg", seed=k)
            write_label(root / f"{split}_segmentations" / f"{split}{k}.png", stripes(stored))
    write_image(root / "train_images" / "unlisted.jpg", seed=9)
    write_label(root / "train_segmentations" / "unlisted.png", stripes([0]))
    (root / "train_id.txt").write_text("train1\ntrain0\n")
    return root


# --- FoodSeg103 (official layout) ---------------------------------------------------------------------
FOODSEG_STORED = {"train": [[0, 1, 2, 103], [50, 51, 0, 0]], "test": [[103, 102, 101, 0]]}


def make_foodseg103(root: Path) -> Path:
    """``root/FoodSeg103/Images/{img_dir,ann_dir}/{train,test}``: stems 00000<k>."""
    for split, rows in FOODSEG_STORED.items():
        for k, stored in enumerate(rows):
            write_image(root / "FoodSeg103" / "Images" / "img_dir" / split / f"{k:05d}.jpg", seed=k)
            write_label(root / "FoodSeg103" / "Images" / "ann_dir" / split / f"{k:05d}.png", stripes(stored))
    return root


# --- CamVid (SegNet copy) -------------------------------------------------------------------------
# written out of order on purpose; the loader must sort by (sequence, frame number)
CAMVID_FILES = ["0006R0_f00930", "0001TP_006720", "0001TP_006690", "0006R0_f00960", "0001TP_006750"]
CAMVID_STORED = [[0, 1, 2, 3, 4, 5, 11, 11], [6, 7, 8, 9, 10, 11, 0, 0]]
CAMVID_TRAIN_IDS = [[0, 1, 2, 3, 4, 5, 255, 255], [6, 7, 8, 9, 10, 255, 0, 0]]


def make_camvid(root: Path, split: str = "train") -> Path:
    for k, name in enumerate(CAMVID_FILES):
        write_image(root / split / f"{name}.png", seed=k)
        write_label(root / f"{split}annot" / f"{name}.png", stripes(CAMVID_STORED[k % 2]))
    return root


# --- the plain folder format ------------------------------------------------------------------------
FOLDER_STEMS = ["cat_01", "cat_02", "dog_01"]
FOLDER_STORED = [[0, 1, 2, 255], [2, 2, 1, 1], [0, 0, 0, 2]]


def make_folder(root: Path, meta: str = "classes: [background, cat, dog]\n") -> Path:
    for k, (stem, stored) in enumerate(zip(FOLDER_STEMS, FOLDER_STORED, strict=True)):
        write_image(root / "images" / f"{stem}.jpg", seed=k)
        write_label(root / "masks" / f"{stem}.png", stripes(stored))
    (root / "meta.yaml").write_text(meta)
    return root


# --- CamVid clips: a labelled copy plus frames "extracted from the videos" -------------------------------
# Frames are tiny (8x16). Every pixel of a frame stores its frame number in R (mod 256), G is 200 in the
# labelled images and 0 in the extracted video frames, and B is a left-to-right ramp 0, 10, ..., 150 so a
# horizontal flip is visible. Labels: 4 stripes of stored values CLIP_STORED.
CLIP_H, CLIP_W = 8, 16
CLIP_LABELLED = {"train": {"0001TP": [6690, 6720, 6750, 6780, 6810], "0006R0": [930, 960, 990]},
                 "val": {"0001TP": [6700]}}  # fmt: skip
CLIP_VIDEO_RANGE = {"0001TP": (6689, 6811), "0006R0": (929, 991)}  # extracted frames, inclusive
CLIP_STORED = [3, 11, 8, 0]
CLIP_TRAIN_IDS = [3, 255, 8, 0]  # 11 (void) -> 255


def clip_frame_pixels(number: int, labelled: bool, height: int = CLIP_H, width: int = CLIP_W) -> np.ndarray:
    """``uint8`` (height, width, 3) content of frame ``number`` as described above."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = number % 256
    pixels[..., 1] = 200 if labelled else 0
    pixels[..., 2] = np.arange(width) * 10
    return pixels


def camvid_clip_name(sequence: str, number: int) -> str:
    """File stem as in the SegNet copy: ``0001TP_006690``; the other sequences use ``f`` + 5 digits."""
    return f"{sequence}_{number:06d}" if sequence == "0001TP" else f"{sequence}_f{number:05d}"


def make_camvid_clips(root: Path) -> tuple[Path, Path]:
    """``root/camvid`` (train and val, labelled) and ``root/frames`` (extracted frames); returns both.

    Extracted frames of 0001TP are PNGs in ``frames/0001TP/``, those of 0006R0 JPEGs directly in ``frames/``.
    """
    camvid, frames = root / "camvid", root / "frames"
    for split, sequences in CLIP_LABELLED.items():
        for sequence, numbers in sequences.items():
            for number in numbers:
                name = camvid_clip_name(sequence, number)
                (camvid / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(clip_frame_pixels(number, labelled=True)).save(camvid / split / f"{name}.png")
                write_label(camvid / f"{split}annot" / f"{name}.png", stripes(CLIP_STORED, CLIP_H, CLIP_W))
    for sequence, (first, last) in CLIP_VIDEO_RANGE.items():
        folder, suffix = (frames / sequence, ".png") if sequence == "0001TP" else (frames, ".jpg")
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(first, last + 1):
            path = folder / f"{camvid_clip_name(sequence, number)}{suffix}"
            Image.fromarray(clip_frame_pixels(number, labelled=False)).save(path)
    return camvid, frames
