"""CamVid (SegNet copy): void 11 -> 255, video order, clips of consecutive labelled frames."""

from __future__ import annotations

import numpy as np
import torch

from ccnet.data import CamVid, ClipDataset, collate, get_dataset, train_transforms
from tests.data.fakes import CAMVID_TRAIN_IDS, H, W, stripes


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


def test_clips_never_cross_sequences(camvid_root):
    dataset = CamVid(camvid_root, "train")
    assert dataset.clip_indices(2) == [(0, 1), (1, 2), (3, 4)]
    assert dataset.clip_indices(3) == [(0, 1, 2)]
    assert dataset.clip_indices(2, stride=2) == [(0, 1), (3, 4)]


def test_clip_dataset_items(camvid_root):
    clips = ClipDataset(CamVid(camvid_root, "train"), clip_length=3)
    item = clips[0]
    assert item["image"].shape == (3, 3, H, W) and item["mask"].shape == (3, H, W)
    assert item["meta"]["frames"] == [6690, 6720, 6750]
    np.testing.assert_array_equal(item["mask"][1].numpy(), stripes(CAMVID_TRAIN_IDS[1]))


def test_clip_frames_share_the_random_transform(camvid_root):
    torch.manual_seed(0)
    clips = ClipDataset(
        CamVid(camvid_root, "train"), clip_length=2, transforms=train_transforms((16, 16), scale=(64, 32))
    )
    batch = collate([clips[0], clips[2]])
    assert batch["image"].shape == (2, 2, 3, 16, 16) and batch["mask"].shape == (2, 2, 16, 16)
    # frames 0 and 1 of a clip hold stored patterns 0 and 1, so the stripe *positions* agree after cropping:
    # wherever frame 0 shows stripe j (value CAMVID_TRAIN_IDS[0][j]) frame 1 shows CAMVID_TRAIN_IDS[1][j]
    lookup = {a: b for a, b in zip(CAMVID_TRAIN_IDS[1], CAMVID_TRAIN_IDS[0], strict=True) if a != 255}
    first, second = batch["mask"][0, 0], batch["mask"][0, 1]
    for value, partner in lookup.items():
        where = second == value
        if where.any() and partner != 255:
            assert bool((first[where] == partner).all())


def test_metadata():
    assert CamVid.meta.classes == (
        "sky", "building", "pole", "road", "sidewalk", "tree", "sign/symbol", "fence", "car", "pedestrian",
        "bicyclist",
    )  # fmt: skip
    assert CamVid.meta.palette[4] == (60, 40, 222) and CamVid.meta.palette[10] == (0, 128, 192)
