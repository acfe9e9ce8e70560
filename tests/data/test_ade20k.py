"""ADE20K: reduce_zero_label (0 -> 255, c -> c-1) and the ADEChallengeData2016 layout."""

from __future__ import annotations

import numpy as np
import pytest

from ccnet.data import ADE20K, DatasetError, get_dataset
from tests.data.fakes import ADE_TRAIN_IDS, stripes, write_label


def test_reduce_zero_label(ade20k_root):
    dataset = get_dataset("ade20k", ade20k_root, "val")  # root = parent of ADEChallengeData2016
    assert len(dataset) == 2
    for index, expected in enumerate(ADE_TRAIN_IDS):
        np.testing.assert_array_equal(dataset.load_raw(index)[1], stripes(expected).astype(np.int64))
    _, label = dataset.load_raw(0)
    assert label[0, 0] == 255 and label[0, 8] == 0  # stored 0 -> ignore, stored 1 -> class 0 ("wall")


def test_root_may_be_the_challenge_directory(ade20k_root):
    dataset = ADE20K(ade20k_root / "ADEChallengeData2016", "val")
    assert [s.image.name for s in dataset.samples] == ["ADE_val_00000001.jpg", "ADE_val_00000002.jpg"]


def test_value_above_150_is_an_error(ade20k_root):
    path = ade20k_root / "ADEChallengeData2016" / "annotations" / "validation" / "ADE_val_00000002.png"
    write_label(path, stripes([1, 151, 200, 3]))
    with pytest.raises(DatasetError, match=r"ADE_val_00000002\.png has values \[151, 200\]"):
        ADE20K(ade20k_root, "val").load_raw(1)


def test_train_split_missing(ade20k_root):
    with pytest.raises(
        DatasetError, match=r"no images matching images/training/\*\.jpg .*found 0 images, 0 labels"
    ):
        ADE20K(ade20k_root, "train")


def test_metadata():
    assert len(ADE20K.meta.classes) == 150 and len(ADE20K.meta.palette) == 150
    assert ADE20K.meta.classes[:3] == ("wall", "building", "sky") and ADE20K.meta.classes[-1] == "flag"
    assert ADE20K.meta.palette[0] == (120, 120, 120) and ADE20K.meta.palette[-1] == (92, 0, 255)
    assert len(set(ADE20K.meta.classes)) == 150
