"""Lookup-table label mappings against hand-written expectations."""

from __future__ import annotations

import numpy as np
import pytest

from ccnet.data import DatasetError
from ccnet.data.labels import cityscapes_label_ids, index_labels, reduce_zero_label, void_to_ignore


def test_cityscapes_table_matches_the_official_train_ids():
    table = cityscapes_label_ids().table
    expected = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
                26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}  # fmt: skip
    for label_id in range(34):
        assert table[label_id] == expected.get(label_id, 255), label_id
    assert table[255] == 255 and table[34] == -1 and table[254] == -1


def test_whole_images_are_mapped_at_once():
    stored = np.array([[0, 1, 150], [255, 2, 149]], dtype=np.uint8)
    mapped = reduce_zero_label(150)(stored)
    np.testing.assert_array_equal(mapped, [[255, 0, 149], [255, 1, 148]])
    assert mapped.dtype == np.int64


def test_void_and_index_mappings():
    np.testing.assert_array_equal(
        void_to_ignore(11, 11)(np.array([0, 10, 11, 255], dtype=np.uint8)), [0, 10, 255, 255]
    )
    np.testing.assert_array_equal(index_labels(3, 9)(np.array([0, 2, 9], dtype=np.uint8)), [0, 2, 255])
    with pytest.raises(
        DatasetError, match=r"x\.png has values \[3, 255\] outside the allowed \[0, 3\) or ignore 9"
    ):
        index_labels(3, 9)(np.array([0, 3, 255], dtype=np.uint8), "x.png")


def test_many_bad_values_are_summarised():
    stored = np.arange(20, 40, dtype=np.uint8)
    with pytest.raises(DatasetError, match=r"\[20, 21, .*29, \.\.\. \(20 values\)\]"):
        index_labels(5)(stored)


@pytest.mark.parametrize(("num_classes", "ignore"), [(0, 255), (256, 255), (5, 3)])
def test_invalid_index_mapping(num_classes, ignore):
    with pytest.raises(ValueError):
        index_labels(num_classes, ignore)
