"""Pascal VOC 2012 + SBD aug: palette PNG indices, list files, SegmentationClassAug for train_aug."""

from __future__ import annotations

import numpy as np
import pytest

from ccnet.data import DatasetError, PascalVOC, get_dataset
from ccnet.data.meta import voc_colormap
from tests.data.fakes import VOC_IDS, VOC_STORED, stripes, write_label


def test_val_reads_palette_indices(voc_root):
    dataset = get_dataset("voc", voc_root, "val")
    assert [s.image.stem for s in dataset.samples] == [VOC_IDS[1]]
    assert dataset.samples[0].label.parent.name == "SegmentationClass"
    # stored indices come back as they are: 0..20 classes, 255 boundary = ignore
    np.testing.assert_array_equal(dataset.load_raw(0)[1], stripes([0, 0, 0, 0, 12, 12, 255, 255]))


def test_train_aug_uses_aug_list_and_aug_labels(voc_root):
    dataset = PascalVOC(voc_root / "VOCdevkit", "train_aug")  # VOCdevkit is accepted as root too
    assert [s.image.stem for s in dataset.samples] == VOC_IDS
    assert {s.label.parent.name for s in dataset.samples} == {"SegmentationClassAug"}
    np.testing.assert_array_equal(dataset.load_raw(0)[1], stripes([0, 1, 15, 20, 255, 0, 7, 7]))
    np.testing.assert_array_equal(dataset.load_raw(2)[1], stripes(VOC_STORED[2]))


def test_missing_list_file(voc_root):
    lists = voc_root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation"
    (lists / "aug.txt").unlink()
    with pytest.raises(
        DatasetError, match=r"train_aug\.txt not found .*found 3 files in JPEGImages, 3 in Segm"
    ):
        PascalVOC(voc_root, "train_aug")


def test_listed_image_missing(voc_root):
    (voc_root / "VOCdevkit" / "VOC2012" / "JPEGImages" / f"{VOC_IDS[2]}.jpg").unlink()
    with pytest.raises(
        DatasetError, match=rf"{VOC_IDS[2]}\.jpg: listed in train\.txt but the image is missing"
    ):
        PascalVOC(voc_root, "train")
    dataset = PascalVOC(voc_root, "train", strict=False)
    assert len(dataset) == 1 and len(dataset.problems) == 1


def test_empty_list_is_an_empty_split(voc_root):
    (voc_root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt").write_text("\n")
    with pytest.raises(DatasetError, match=r"split 'val' .* is empty \(found 0 images, 0 labels\)"):
        PascalVOC(voc_root, "val")


def test_class_21_is_an_error(voc_root):
    write_label(
        voc_root / "VOCdevkit" / "VOC2012" / "SegmentationClass" / f"{VOC_IDS[1]}.png", stripes([0, 21])
    )
    with pytest.raises(DatasetError, match=r"has values \[21\] outside the allowed \[0, 21\) or ignore 255"):
        PascalVOC(voc_root, "val").load_raw(0)


def test_colormap():
    colours = voc_colormap(256)
    assert colours[:4] == ((0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0))
    assert colours[15] == (192, 128, 128)  # person
    assert colours[255] == (224, 224, 192)  # the boundary colour
    assert PascalVOC.meta.palette == colours[:21] and len(PascalVOC.meta.classes) == 21
