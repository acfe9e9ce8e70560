"""Bad input: every case raises a DatasetError naming the file and the problem, never a wrong label."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ccnet.data import Cityscapes, DatasetError, FolderDataset, get_dataset, read_image, read_label
from ccnet.data.labels import index_labels
from tests.data.fakes import CITYSCAPES_FRAMES, stripes, write_image, write_label


def _label_path(root, k=0):
    return root / "gtFine" / "val" / f"{CITYSCAPES_FRAMES[k]}_gtFine_labelIds.png"


def _image_path(root, k=0):
    return root / "leftImg8bit" / "val" / f"{CITYSCAPES_FRAMES[k]}_leftImg8bit.png"


def test_root_missing(tmp_path):
    with pytest.raises(DatasetError, match=r"root directory .*nowhere does not exist"):
        get_dataset("cityscapes", tmp_path / "nowhere", "val")


def test_layout_wrong_names_pattern_and_counts(cityscapes_root):
    (cityscapes_root / "leftImg8bit").rename(cityscapes_root / "images")  # not the official name
    with pytest.raises(DatasetError) as error:
        Cityscapes(cityscapes_root, "val")
    message = str(error.value)
    assert "no images matching leftImg8bit/val/*/*_leftImg8bit.png" in message
    assert "found 0 images, 3 labels" in message


def test_image_without_label(cityscapes_root):
    _label_path(cityscapes_root, 1).unlink()
    with pytest.raises(DatasetError) as error:
        Cityscapes(cityscapes_root, "val")
    assert "aachen_000001_000019_leftImg8bit.png: image has no label matching gtFine/val" in str(error.value)
    assert "found 3 images, 2 labels" in str(error.value)


def test_label_without_image(cityscapes_root):
    _image_path(cityscapes_root, 2).unlink()
    with pytest.raises(DatasetError, match=r"bochum_000000_000313_gtFine_labelIds\.png: label has no image"):
        Cityscapes(cityscapes_root, "val")


def test_non_strict_keeps_pairs_and_records_problems(cityscapes_root):
    _label_path(cityscapes_root, 1).unlink()
    dataset = Cityscapes(cityscapes_root, "val", strict=False)
    assert len(dataset) == 2
    assert [(p.name, reason.split(" matching")[0]) for p, reason in dataset.problems] == [
        ("aachen_000001_000019_leftImg8bit.png", "image has no label")
    ]


def test_size_mismatch(cityscapes_root):
    write_label(_label_path(cityscapes_root), stripes([7, 8], height=30))
    with pytest.raises(
        DatasetError, match=r"aachen_000000_000019_leftImg8bit\.png is 32x64 but its label .* is 30x64"
    ):
        Cityscapes(cityscapes_root, "val").load_raw(0)


def test_corrupt_image(cityscapes_root):
    _image_path(cityscapes_root).write_bytes(b"this is not a png")
    with pytest.raises(
        DatasetError, match=r"image .*aachen_000000_000019_leftImg8bit\.png cannot be decoded"
    ):
        Cityscapes(cityscapes_root, "val")[0]


def test_truncated_image(cityscapes_root):
    path = _image_path(cityscapes_root)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        DatasetError, match=r"leftImg8bit\.png cannot be decoded \(corrupt or truncated file\)"
    ):
        read_image(path)


def test_label_values_out_of_range(cityscapes_root):
    write_label(_label_path(cityscapes_root), stripes([7, 40, 41, 8]))
    with pytest.raises(DatasetError) as error:
        Cityscapes(cityscapes_root, "val").load_raw(0)
    assert str(error.value) == (
        f"label {_label_path(cityscapes_root)} has values [40, 41] outside the allowed labelIds 0..33 or 255"
    )


def test_rgb_label(folder_root):
    rgb = np.zeros((32, 64, 3), dtype=np.uint8)
    rgb[:, 32:] = (255, 0, 0)
    Image.fromarray(rgb).save(folder_root / "masks" / "cat_02.png")
    with pytest.raises(
        DatasetError, match=r"label .*cat_02\.png is a 3-channel RGB image; expected a single-chan"
    ):
        FolderDataset(folder_root).load_raw(1)


def test_sixteen_bit_label_values_above_255(tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(np.full((4, 4), 300, dtype=np.uint16)).save(path)
    stored = read_label(path)
    with pytest.raises(DatasetError, match=r"wide\.png has values \[300\]"):
        index_labels(3)(stored, path)


def test_empty_split(folder_root):
    (folder_root / "splits").mkdir()
    (folder_root / "splits" / "val.txt").write_text("")
    with pytest.raises(
        DatasetError, match=r"split 'val' under .* is empty: val\.txt lists no image stems \(found 3 images"
    ):
        FolderDataset(folder_root, "val")


def test_unknown_dataset_and_split(cityscapes_root):
    with pytest.raises(
        ValueError, match=r"unknown dataset 'kitti'; available: ade20k, camvid, camvid_clips, cityscapes"
    ):
        get_dataset("kitti", cityscapes_root)
    with pytest.raises(
        DatasetError, match=r"unknown split 'validation'; expected one of \('train', 'val', 'test'\)"
    ):
        Cityscapes(cityscapes_root, "validation")
    with pytest.raises(DatasetError, match=r"dataset 'cityscapes' needs root="):
        get_dataset("cityscapes")


def test_missing_file_after_listing(cityscapes_root):
    dataset = Cityscapes(cityscapes_root, "val")
    _image_path(cityscapes_root).unlink()
    write_image(_image_path(cityscapes_root, 1))  # unrelated rewrite keeps the others valid
    with pytest.raises(DatasetError, match=r"image .*aachen_000000_000019_leftImg8bit\.png does not exist"):
        dataset.load_raw(0)
