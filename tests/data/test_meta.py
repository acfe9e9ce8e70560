"""Class metadata: every dataset has matching names and colours, ignore 255, and the recipe scales."""

from __future__ import annotations

import pytest

from ccnet.data import dataset_class, list_datasets
from ccnet.data.meta import ADE20K, CAMVID, CITYSCAPES, CONTEXT, LIP, VOC, DatasetMeta


@pytest.mark.parametrize(
    ("meta", "num_classes", "crop"),
    [(CITYSCAPES, 19, (512, 1024)), (ADE20K, 150, (512, 512)), (VOC, 21, (512, 512)), (LIP, 20, (473, 473)),
     (CAMVID, 11, (360, 480)), (CONTEXT, 4, (64, 64))],
)  # fmt: skip
def test_metadata_tables(meta, num_classes, crop):
    assert meta.num_classes == num_classes == len(meta.palette)
    assert meta.ignore_index == 255 and meta.crop_size == crop
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in meta.palette)


def test_recipe_scales():
    assert CITYSCAPES.train_scale == (2048, 1024) and ADE20K.train_scale == (2048, 512)
    assert VOC.test_scale == (2048, 512)


def test_palette_length_is_checked():
    with pytest.raises(ValueError, match="2 classes but 1 colours"):
        DatasetMeta("x", ("a", "b"), ((0, 0, 0),), None, None, (8, 8))


def test_registry():
    assert list_datasets() == [
        "ade20k",
        "camvid",
        "camvid_clips",
        "cityscapes",
        "context",
        "context_video",
        "folder",
        "foodseg103",
        "handed",
        "lip",
        "voc",
    ]
    assert dataset_class("Cityscapes").meta is CITYSCAPES
