"""COCO boxes that overshoot the image by less than the tolerated rounding (OUTSIDE_TOLERANCE, 1 px) are
accepted and cut off at the image border, each coordinate at its own side: x at the width, y at the height.
Oracle: the 32 x 48 image's borders, by hand."""

from __future__ import annotations

import pytest

from ccnet.data.coco import coco_dataset
from tests.data import coco_fakes

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_overshooting_boxes_are_clipped_per_axis(tmp_path):
    data = coco_fakes.annotations()
    zebra = next(a for a in data["annotations"] if a["id"] == 20)
    # the zebra's box made to overshoot the bottom (y1 = 32.6 > 32) and the right side (x1 = 48.4 > 48),
    # both within the 1 px tolerance; y1 < 48, so clipping y at the width would leave it at 32.6
    zebra["bbox"] = [5.0, 5.0, 43.4, 27.6]
    ann, images = tmp_path / "instances.json", tmp_path / "images"
    coco_fakes.write_coco(ann, images, data)
    dataset = coco_dataset(ann_file=ann, image_dir=images)
    _, target = dataset.load_raw(dataset.image_ids.index(2))
    assert target["boxes"].tolist() == [[5.0, 5.0, 48.0, 32.0]]
