"""The plain folder format: images/ + masks/ + meta.yaml|json, splits by list file or subfolder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ccnet.data import DatasetError, FolderDataset, get_dataset
from ccnet.data.meta import voc_colormap
from tests.data.fakes import FOLDER_STEMS, FOLDER_STORED, stripes, write_image, write_label


def test_all_split_reads_every_pair(folder_root):
    dataset = get_dataset("folder", folder_root, "all")
    assert dataset.classes == ("background", "cat", "dog")
    assert dataset.palette == voc_colormap(3)  # default palette
    assert [s.image.stem for s in dataset.samples] == FOLDER_STEMS
    for index, stored in enumerate(FOLDER_STORED):
        np.testing.assert_array_equal(dataset.load_raw(index)[1], stripes(stored).astype(np.int64))


def test_split_list_file(folder_root):
    (folder_root / "splits").mkdir()
    (folder_root / "splits" / "val.txt").write_text("dog_01\n")
    dataset = FolderDataset(folder_root, "val")
    assert [s.image.stem for s in dataset.samples] == ["dog_01"]


def test_split_subfolders(tmp_path):
    root = tmp_path / "sub"
    write_image(root / "images" / "train" / "a.png")
    write_label(root / "masks" / "train" / "a.png", stripes([0, 1]))
    write_image(root / "images" / "val" / "b.png")
    write_label(root / "masks" / "val" / "b.png", stripes([1, 1]))
    (root / "meta.json").write_text(json.dumps({"classes": ["bg", "fg"], "palette": [[0, 0, 0], [9, 9, 9]]}))
    dataset = FolderDataset(root, "val")
    assert [s.image.name for s in dataset.samples] == ["b.png"] and dataset.palette[1] == (9, 9, 9)


def test_custom_ignore_value_becomes_255(folder_root):
    (folder_root / "meta.yaml").write_text("classes: [background, cat, dog]\nignore_index: 200\n")
    write_label(folder_root / "masks" / "cat_02.png", stripes([200, 1, 2, 0]))
    np.testing.assert_array_equal(FolderDataset(folder_root).load_raw(1)[1], stripes([255, 1, 2, 0]))


def test_reduce_zero_label_option(folder_root):
    (folder_root / "meta.yaml").write_text("classes: [cat, dog]\nreduce_zero_label: true\n")
    np.testing.assert_array_equal(FolderDataset(folder_root).load_raw(0)[1], stripes([255, 0, 1, 255]))


def test_unknown_split_lists_available(folder_root):
    with pytest.raises(DatasetError, match=r"expected images/test/ or splits/test\.txt \(available: all\)"):
        FolderDataset(folder_root, "test")


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ("name: x\n", r"'classes' must be a non-empty list"),
        ("classes: [a, b]\npalette: [[0, 0, 0]]\n", r"'palette' must be 2 \[R, G, B\] triples"),
        ("classes: [a, b]\nignore_index: 1\n", r"ignore_index 1 must be in 2\.\.255"),
        ("classes: [a, b\n", r"meta\.yaml: cannot be parsed"),
    ],
)
def test_bad_metadata(folder_root, meta, message):
    (folder_root / "meta.yaml").write_text(meta)
    with pytest.raises(DatasetError, match=message):
        FolderDataset(folder_root)


def test_missing_metadata(folder_root):
    (folder_root / "meta.yaml").unlink()
    with pytest.raises(DatasetError, match=r"no metadata file \(meta\.yaml / meta\.yml / meta\.json\)"):
        FolderDataset(folder_root)
