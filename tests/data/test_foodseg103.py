"""FoodSeg103: the official layout, 104 classes with background scored, test split = validation."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

import ccnet.cli.data
from ccnet.data import DatasetError, FoodSeg103, get_dataset
from tests.data.fakes import FOODSEG_STORED, make_foodseg103, stripes, write_label


@pytest.fixture
def foodseg_root(tmp_path):
    return make_foodseg103(tmp_path / "food")


@pytest.mark.parametrize(("split", "stored"), [("train", "train"), ("test", "test"), ("val", "test")])
def test_splits_read_indices_as_stored(foodseg_root, split, stored):
    for root in (foodseg_root, foodseg_root / "FoodSeg103"):  # the archive's parent or the folder itself
        dataset = get_dataset("foodseg103", root, split)
        assert len(dataset) == len(FOODSEG_STORED[stored])
        for index, values in enumerate(FOODSEG_STORED[stored]):
            np.testing.assert_array_equal(dataset.load_raw(index)[1], stripes(values).astype(np.int64))


def test_value_104_is_an_error(foodseg_root):
    path = foodseg_root / "FoodSeg103" / "Images" / "ann_dir" / "train" / "00000.png"
    write_label(path, stripes([0, 104]))
    with pytest.raises(DatasetError, match=r"00000.png has values \[104\]"):
        FoodSeg103(foodseg_root, "train").load_raw(0)


def test_missing_layout_names_the_pattern(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"foodseg103: no images matching Images/img_dir/train/\*.jpg"):
        get_dataset("foodseg103", tmp_path / "empty", "train")


def test_metadata():
    meta = FoodSeg103.meta
    assert meta.num_classes == 104 and len(meta.palette) == 104 and len(set(meta.palette)) == 104
    assert meta.classes[:3] == ("background", "candy", "egg tart") and meta.classes[-1] == "other ingredients"
    assert meta.classes[46] == "steak" and meta.classes[103] == "other ingredients"
    assert meta.crop_size == (512, 1024) and meta.test_scale == (2048, 1024) and meta.flip_pairs == ()


def test_data_check_cli(foodseg_root, capsys):
    parser = argparse.ArgumentParser()
    ccnet.cli.data.add_arguments(parser)
    args = parser.parse_args(["check", "foodseg103", str(foodseg_root), "--split", "val", "--no-progress"])
    assert ccnet.cli.data.run(args) == 0
    out = capsys.readouterr().out
    assert "dataset foodseg103  split val" in out and "paired samples" in out
