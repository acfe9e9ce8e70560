"""Cityscapes: labelIds -> trainIds, *_labelTrainIds.png preference, the label-less test split, pairing."""

from __future__ import annotations

import numpy as np
import pytest

from ccnet.data import Cityscapes, DatasetError, get_dataset
from tests.data.fakes import CITYSCAPES_FRAMES, CITYSCAPES_TRAIN_IDS, H, W, stripes, write_image, write_label


def test_label_ids_map_to_train_ids(cityscapes_root):
    dataset = get_dataset("cityscapes", cityscapes_root, "val")
    assert len(dataset) == 3
    for index, expected in enumerate(CITYSCAPES_TRAIN_IDS):
        image, label = dataset.load_raw(index)
        assert image.shape == (H, W, 3) and image.dtype == np.uint8
        assert label.dtype == np.int64
        np.testing.assert_array_equal(label, stripes(expected).astype(np.int64))


def test_label_id_26_is_car_train_id_13(cityscapes_root):
    _, label = Cityscapes(cityscapes_root, "val").load_raw(0)
    assert label[0, 2 * 8] == 13  # third stripe holds labelId 26
    assert Cityscapes.meta.classes[13] == "car"


def test_samples_are_sorted_and_carry_city(cityscapes_root):
    dataset = Cityscapes(cityscapes_root, "val")
    names = [s.image.name.removesuffix("_leftImg8bit.png") for s in dataset.samples]
    assert names == [frame.split("/")[1] for frame in CITYSCAPES_FRAMES]
    item = dataset[2]
    assert item["meta"]["city"] == "bochum"
    assert item["meta"]["image_path"].endswith("bochum_000000_000313_leftImg8bit.png")
    assert item["meta"]["label_path"].endswith("bochum_000000_000313_gtFine_labelIds.png")


def test_label_train_ids_file_is_preferred(cityscapes_root):
    frame = CITYSCAPES_FRAMES[0]
    # a trainIds file whose content differs from the labelIds mapping shows which file was read
    write_label(
        cityscapes_root / "gtFine" / "val" / f"{frame}_gtFine_labelTrainIds.png", stripes([18, 255, 3, 4])
    )
    dataset = Cityscapes(cityscapes_root, "val")
    assert dataset.samples[0].label.name.endswith("_labelTrainIds.png")
    np.testing.assert_array_equal(dataset.load_raw(0)[1], stripes([18, 255, 3, 4]))
    np.testing.assert_array_equal(dataset.load_raw(1)[1], stripes(CITYSCAPES_TRAIN_IDS[1]))


def test_train_ids_file_with_label_ids_values_is_rejected(cityscapes_root):
    frame = CITYSCAPES_FRAMES[0]
    path = cityscapes_root / "gtFine" / "val" / f"{frame}_gtFine_labelTrainIds.png"
    write_label(path, stripes([7, 26, 0, 1]))
    with pytest.raises(DatasetError, match=r"_labelTrainIds\.png has values \[26\] outside"):
        Cityscapes(cityscapes_root, "val").load_raw(0)


def test_test_split_has_all_ignore_masks(tmp_path):
    write_image(tmp_path / "leftImg8bit" / "test" / "berlin" / "berlin_000000_000019_leftImg8bit.png")
    dataset = Cityscapes(tmp_path, "test")
    item = dataset[0]
    assert item["meta"]["has_label"] is False and item["meta"]["label_path"] is None
    assert item["mask"].shape == (H, W) and bool((item["mask"] == 255).all())


def test_metadata():
    assert len(Cityscapes.meta.classes) == 19 and Cityscapes.meta.ignore_index == 255
    assert Cityscapes.meta.palette[0] == (128, 64, 128)  # road
    assert Cityscapes.meta.palette[13] == (0, 0, 142)  # car
    assert Cityscapes.meta.crop_size == (512, 1024) and Cityscapes.meta.train_scale == (2048, 1024)
