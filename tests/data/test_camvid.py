"""CamVid (SegNet copy): void 11 -> 255, video order (clips: tests/data/test_camvid_clips.py)."""

from __future__ import annotations

import numpy as np

from ccnet.data import CamVid, get_dataset
from tests.data.fakes import CAMVID_TRAIN_IDS, stripes


def test_void_is_ignored(camvid_root):
    dataset = get_dataset("camvid", camvid_root, "train")
    by_name = {s.image.stem: i for i, s in enumerate(dataset.samples)}
    # CAMVID_FILES[k] holds CAMVID_STORED[k % 2]
    np.testing.assert_array_equal(dataset.load_raw(by_name["0006R0_f00930"])[1], stripes(CAMVID_TRAIN_IDS[0]))
    np.testing.assert_array_equal(dataset.load_raw(by_name["0001TP_006720"])[1], stripes(CAMVID_TRAIN_IDS[1]))


def test_frames_in_video_order(camvid_root):
    dataset = CamVid(camvid_root, "train")
    order = [(s.extra["sequence"], s.extra["frame"]) for s in dataset.samples]
    assert order == [("0001TP", 6690), ("0001TP", 6720), ("0001TP", 6750), ("0006R0", 930), ("0006R0", 960)]
    assert dataset[3]["meta"]["sequence"] == "0006R0" and dataset[3]["meta"]["frame"] == 930


def test_metadata():
    assert CamVid.meta.classes == (
        "sky", "building", "pole", "road", "sidewalk", "tree", "sign/symbol", "fence", "car", "pedestrian",
        "bicyclist",
    )  # fmt: skip
    assert CamVid.meta.palette[4] == (60, 40, 222) and CamVid.meta.palette[10] == (0, 128, 192)
