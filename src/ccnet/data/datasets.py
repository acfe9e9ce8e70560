"""The standard datasets, read from their official (as-distributed) layouts.

Layouts under ``root`` (``[...]`` = optional parent directory that is also accepted):

- ``cityscapes`` (train, val, test): leftImg8bit/<split>/<city>/*_leftImg8bit.png and
  gtFine/<split>/<city>/*_gtFine_labelIds.png (or *_gtFine_labelTrainIds.png).
- ``ade20k`` (train, val): [ADEChallengeData2016/]images/{training,validation}/*.jpg and
  annotations/{training,validation}/*.png.
- ``voc`` (train, val, trainval, train_aug): [VOCdevkit/VOC2012/]JPEGImages/*.jpg,
  SegmentationClass[Aug]/*.png and ImageSets/Segmentation/<split>.txt.
- ``lip`` (train, val): TrainVal_images/<split>_images/*.jpg and
  TrainVal_parsing_annotations/<split>_segmentations/*.png, or CE2P's flat <split>_images/,
  <split>_segmentations/ with optional <split>_id.txt lists.
- ``foodseg103`` (train, test; val = test): [FoodSeg103/]Images/img_dir/<split>/*.jpg and
  Images/ann_dir/<split>/*.png.
- ``camvid`` (train, val, test), the SegNet copy: <split>/*.png and <split>annot/*.png, files named
  <sequence>_<frame>.png. ``camvid_clips`` (:mod:`ccnet.data.video`) reads the same layout as clips centred
  on the labelled frames, optionally with frames extracted from the videos.

Label conventions (stored value -> training id, everything through one lookup table):

- Cityscapes: labelIds -> trainIds (7->0, 8->1, ..., 26->13, ..., 33->18, other ids 0..33 -> 255); a
  ``*_labelTrainIds.png`` next to the labelIds file is used instead when present. The ``test`` split has no
  public labels: its masks are all 255 and ``meta["has_label"]`` is False (the gtFine/test files, which are
  placeholders, are not read).
- ADE20K: ``reduce_zero_label``: 0 ("other") -> 255, ``c`` -> ``c - 1`` for c in 1..150.
- VOC: palette PNGs are read as indices (0..20, 255 = boundary, ignored). ``train_aug`` reads the list
  ``ImageSets/Segmentation/train_aug.txt`` (or ``aug.txt``) and labels from ``SegmentationClassAug``; the
  other splits read ``SegmentationClass``. List lines may be ids or "/JPEGImages/x.jpg /Seg.../x.png" pairs.
- LIP: indices 0..19 as stored. FoodSeg103: indices 0..103 as stored. CamVid: 0..10 as stored, 11 (void)
  -> 255.

Any value outside these sets raises :class:`~ccnet.data.files.DatasetError` naming the file and values.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ccnet.data.base import (
    FileSegmentationDataset,
    Listing,
    Sample,
    pair_by_key,
    register_dataset,
)
from ccnet.data.files import DatasetError, list_files
from ccnet.data.labels import (
    LabelMapping,
    cityscapes_label_ids,
    index_labels,
    reduce_zero_label,
    void_to_ignore,
)
from ccnet.data.meta import ADE20K, CAMVID, CAMVID_VOID_LABEL, CITYSCAPES, FOODSEG103, LIP, VOC


def _by_stem(paths: list[Path], suffix: str = "") -> dict[str, Path]:
    """{file name without ``suffix`` (or without its extension): path}."""
    if suffix:
        return {p.name[: -len(suffix)]: p for p in paths if p.name.endswith(suffix)}
    return {p.stem: p for p in paths}


def _first_dir(*candidates: Path) -> Path:
    """The first candidate that is a directory, else the first candidate (reported in errors)."""
    return next((c for c in candidates if c.is_dir()), candidates[0])


def _dataset_root(root: Path, marker: str, *nested: str) -> Path:
    """``root`` or the first ``root / nested`` holding the ``marker`` directory (users pass either)."""
    candidates = [root, *(root / n for n in nested)]
    return next((c for c in candidates if (c / marker).is_dir()), root)


@register_dataset("cityscapes")
class Cityscapes(FileSegmentationDataset):
    """Cityscapes fine annotations, 19 classes (``meta["city"]`` holds the city)."""

    meta = CITYSCAPES
    splits = ("train", "val", "test")
    _label_ids = cityscapes_label_ids()
    _train_ids = index_labels(CITYSCAPES.num_classes)

    def list_split(self, root: Path, split: str) -> Listing:
        image_pattern = f"leftImg8bit/{split}/*/*_leftImg8bit.png"
        label_pattern = f"gtFine/{split}/*/*_gtFine_labelIds.png (or *_gtFine_labelTrainIds.png)"

        def keyed(directory: Path, suffix: str) -> dict[str, Path]:
            return {
                f"{p.parent.name}/{p.name[: -len(suffix)]}": p for p in sorted(directory.glob(f"*/*{suffix}"))
            }

        images = keyed(root / "leftImg8bit" / split, "_leftImg8bit.png")
        if split == "test":
            if not images:
                raise DatasetError(
                    f"{self.name}: no images matching {image_pattern} under {root} (found 0 images)"
                )
            samples = [Sample(p, None, {"city": p.parent.name}) for p in images.values()]
            return Listing(samples, len(images), 0, [])
        labels = keyed(root / "gtFine" / split, "_gtFine_labelIds.png")
        labels.update(keyed(root / "gtFine" / split, "_gtFine_labelTrainIds.png"))  # preferred when present
        listing = pair_by_key(
            images,
            labels,
            image_pattern=image_pattern,
            label_pattern=label_pattern,
            root=root,
            dataset=self.name,
        )
        listing.samples = [Sample(s.image, s.label, {"city": s.image.parent.name}) for s in listing.samples]
        return listing

    def label_mapping(self, sample: Sample) -> LabelMapping:
        assert sample.label is not None
        return self._train_ids if sample.label.name.endswith("_labelTrainIds.png") else self._label_ids


@register_dataset("ade20k")
class ADE20K(FileSegmentationDataset):
    """ADE20K SceneParsing (ADEChallengeData2016), 150 classes, ``reduce_zero_label``.

    ``root`` may be the ADEChallengeData2016 directory or its parent.
    """

    meta = ADE20K
    splits = ("train", "val")
    _mapping = reduce_zero_label(ADE20K.num_classes)

    def list_split(self, root: Path, split: str) -> Listing:
        root = _dataset_root(root, "images", "ADEChallengeData2016")
        folder = {"train": "training", "val": "validation"}[split]
        image_pattern, label_pattern = f"images/{folder}/*.jpg", f"annotations/{folder}/*.png"
        return pair_by_key(
            _by_stem(list_files(root / "images" / folder)),
            _by_stem(list_files(root / "annotations" / folder, (".png",))),
            image_pattern=image_pattern,
            label_pattern=label_pattern,
            root=root,
            dataset=self.name,
        )

    def label_mapping(self, sample: Sample) -> LabelMapping:
        return self._mapping


@register_dataset("voc")
class PascalVOC(FileSegmentationDataset):
    """Pascal VOC 2012 with the SBD "aug" labels, 21 classes (background included).

    ``root`` may be VOC2012, VOCdevkit, or the directory holding VOCdevkit.
    """

    meta = VOC
    splits = ("train", "val", "trainval", "train_aug")
    _mapping = index_labels(VOC.num_classes)

    def list_split(self, root: Path, split: str) -> Listing:
        root = _dataset_root(root, "JPEGImages", "VOC2012", "VOCdevkit/VOC2012")
        lists = root / "ImageSets" / "Segmentation"
        if split == "train_aug":
            list_file = _first_file(lists / "train_aug.txt", lists / "aug.txt")
            label_dir = root / "SegmentationClassAug"
        else:
            list_file = lists / f"{split}.txt"
            label_dir = root / "SegmentationClass"
        image_dir = root / "JPEGImages"
        image_names = set(os.listdir(image_dir)) if image_dir.is_dir() else set()
        label_names = set(os.listdir(label_dir)) if label_dir.is_dir() else set()
        if not list_file.is_file():
            raise DatasetError(
                f"{self.name}: split list {list_file.relative_to(root)} not found under {root} "
                f"(found {len(image_names)} files in JPEGImages, {len(label_names)} in {label_dir.name})"
            )
        ids = [Path(line.split()[0]).stem for line in list_file.read_text().splitlines() if line.strip()]
        samples, problems = [], []
        for image_id in ids:
            image, label = image_dir / f"{image_id}.jpg", label_dir / f"{image_id}.png"
            if image.name not in image_names:
                problems.append((image, f"listed in {list_file.name} but the image is missing"))
            elif label.name not in label_names:
                problems.append((label, f"listed in {list_file.name} but the label is missing"))
            else:
                samples.append(Sample(image, label))
        found_images = sum(f"{i}.jpg" in image_names for i in ids)
        found_labels = sum(f"{i}.png" in label_names for i in ids)
        return Listing(samples, found_images, found_labels, problems)

    def label_mapping(self, sample: Sample) -> LabelMapping:
        return self._mapping


def _first_file(*candidates: Path) -> Path:
    return next((c for c in candidates if c.is_file()), candidates[0])


@register_dataset("lip")
class LIP(FileSegmentationDataset):
    """LIP (Look Into Person) single-person human parsing, 20 classes (background included and scored).

    Reads the official archive layout (``TrainVal_images/<split>_images``, ``TrainVal_parsing_annotations/
    <split>_segmentations``) or CE2P's flat one (``<split>_images``, ``<split>_segmentations``, with an
    optional ``<split>_id.txt`` list of ids), whichever ``root`` holds. The test images have no public
    labels and are not a split here. Left/right classes (arms, legs, shoes) form ``meta.flip_pairs``.
    """

    meta = LIP
    splits = ("train", "val")
    _mapping = index_labels(LIP.num_classes)

    def list_split(self, root: Path, split: str) -> Listing:
        flat = (root / "train_images").is_dir() or (root / f"{split}_images").is_dir()
        if flat:
            image_dir, label_dir = root / f"{split}_images", root / f"{split}_segmentations"
        else:
            annotations = root / "TrainVal_parsing_annotations"
            image_dir = root / "TrainVal_images" / f"{split}_images"
            # some copies unzip the annotations one level deeper
            label_dir = _first_dir(
                annotations / f"{split}_segmentations",
                annotations / annotations.name / f"{split}_segmentations",
            )
        images = _by_stem(list_files(image_dir))
        labels = _by_stem(list_files(label_dir, (".png",)))
        if flat:
            images = self._listed(root, split, images)
            labels = {k: v for k, v in labels.items() if k in images}
        return pair_by_key(
            images,
            labels,
            image_pattern=f"{image_dir.relative_to(root)}/*.jpg",
            label_pattern=f"{label_dir.relative_to(root)}/*.png",
            root=root,
            dataset=self.name,
        )

    def _listed(self, root: Path, split: str, images: dict[str, Path]) -> dict[str, Path]:
        """The images CE2P's ``<split>_id.txt`` lists (all of them without the file); a listed id without an
        image is an error naming the list."""
        id_file = root / f"{split}_id.txt"
        if not id_file.is_file():
            return images
        wanted = [line.strip() for line in id_file.read_text().splitlines() if line.strip()]
        missing = [i for i in wanted if i not in images]
        if missing:
            raise DatasetError(
                f"{self.name}: {id_file} lists {len(missing)} id(s) without an image in {split}_images/, "
                f"e.g. {missing[:3]}"
            )
        return {i: images[i] for i in sorted(wanted)}

    def label_mapping(self, sample: Sample) -> LabelMapping:
        return self._mapping


@register_dataset("foodseg103")
class FoodSeg103(FileSegmentationDataset):
    """FoodSeg103: 104 classes (background + 103 ingredients, background scored), labels stored as indices.

    Layout (the official archive): ``[FoodSeg103/]Images/img_dir/{train,test}/*.jpg`` and
    ``Images/ann_dir/{train,test}/*.png``. The benchmark has no validation split: its ``test`` split serves
    as validation, so ``val`` reads ``test``.
    """

    meta = FOODSEG103
    splits = ("train", "test", "val")
    _mapping = index_labels(FOODSEG103.num_classes)

    def list_split(self, root: Path, split: str) -> Listing:
        root = _dataset_root(root, "Images", "FoodSeg103")
        folder = "test" if split == "val" else split
        return pair_by_key(
            _by_stem(list_files(root / "Images" / "img_dir" / folder)),
            _by_stem(list_files(root / "Images" / "ann_dir" / folder, (".png",))),
            image_pattern=f"Images/img_dir/{folder}/*.jpg",
            label_pattern=f"Images/ann_dir/{folder}/*.png",
            root=root,
            dataset=self.name,
        )

    def label_mapping(self, sample: Sample) -> LabelMapping:
        return self._mapping


_FRAME_NUMBER = re.compile(r"(\d+)$")


def _sequence_and_frame(stem: str) -> tuple[str, int]:
    """``"0001TP_006690"`` -> ``("0001TP", 6690)``, ``"Seq05VD_f00930"`` -> ``("Seq05VD", 930)``."""
    sequence, _, frame = stem.rpartition("_")
    match = _FRAME_NUMBER.search(frame)
    if not sequence or match is None:
        return stem, 0
    return sequence, int(match.group(1))


@register_dataset("camvid")
class CamVid(FileSegmentationDataset):
    """CamVid, the SegNet copy: 11 classes, label 11 (void) ignored.

    Samples are in video order (by sequence, then frame number); ``meta["sequence"]`` and ``meta["frame"]``
    identify each. Clips around the labelled frames: ``camvid_clips`` (:mod:`ccnet.data.video`).
    """

    meta = CAMVID
    splits = ("train", "val", "test")
    _mapping = void_to_ignore(CAMVID.num_classes, CAMVID_VOID_LABEL)

    def list_split(self, root: Path, split: str) -> Listing:
        listing = pair_by_key(
            _by_stem(list_files(root / split, (".png",))),
            _by_stem(list_files(root / f"{split}annot", (".png",))),
            image_pattern=f"{split}/*.png",
            label_pattern=f"{split}annot/*.png",
            root=root,
            dataset=self.name,
        )
        samples = []
        for s in listing.samples:
            sequence, frame = _sequence_and_frame(s.image.stem)
            samples.append(Sample(s.image, s.label, {"sequence": sequence, "frame": frame}))
        listing.samples = sorted(samples, key=lambda s: (s.extra["sequence"], s.extra["frame"], s.image.name))
        return listing

    def label_mapping(self, sample: Sample) -> LabelMapping:
        return self._mapping
