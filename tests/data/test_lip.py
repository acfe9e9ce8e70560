"""LIP: 20 classes stored as indices."""

from __future__ import annotations

import numpy as np
import pytest

from ccnet.data import LIP, DatasetError, get_dataset
from tests.data.fakes import LIP_STORED, stripes, write_label


def test_indices_as_stored(lip_root):
    dataset = get_dataset("lip", lip_root, "train")
    assert len(dataset) == 2
    for index, stored in enumerate(LIP_STORED):
        np.testing.assert_array_equal(dataset.load_raw(index)[1], stripes(stored).astype(np.int64))


def test_value_20_is_an_error(lip_root):
    path = sorted((lip_root / "TrainVal_parsing_annotations" / "train_segmentations").iterdir())[0]
    write_label(path, stripes([0, 20]))
    with pytest.raises(DatasetError, match=rf"{path.name} has values \[20\]"):
        LIP(lip_root, "train").load_raw(0)


def test_metadata():
    assert len(LIP.meta.classes) == 20 and LIP.meta.classes[0] == "Background"
    assert LIP.meta.classes[-1] == "Right-shoe" and LIP.meta.crop_size == (473, 473)
