"""camvid_clips: clips centred on the labelled CamVid frames, from extracted video frames or labelled ones.

The fake tree (tests/data/fakes.py, ``make_camvid_clips``): train labels 0001TP 6690, 6720, ..., 6810 and
0006R0 930, 960, 990 (items 0..4 and 5..7); val labels 0001TP 6700. Extracted frames: 0001TP 6689..6811
(PNG, frames/0001TP/0001TP_006xxx.png), 0006R0 929..991 (JPEG, frames/0006R0_f00xxx.jpg). Pixel R of a
frame = its number mod 256, G = 200 in labelled images and 0 in video frames, B = a left-to-right ramp.
Expected clips below are written out by hand from these facts.
"""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import tv_tensors
from torchvision.transforms import v2

from ccnet.data import CamVidClips, DatasetError, check_dataset, collate, get_dataset, train_transforms
from ccnet.engine.evaluate import raw_pair
from tests.data.fakes import CLIP_H, CLIP_TRAIN_IDS, CLIP_W, make_camvid_clips, stripes

LABELS = stripes(CLIP_TRAIN_IDS, CLIP_H, CLIP_W)  # training ids of every labelled frame
IGNORED = np.full((CLIP_H, CLIP_W), 255)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Read-only (camvid root, frames root) shared by the tests that do not modify files."""
    return make_camvid_clips(tmp_path_factory.mktemp("clips"))


@pytest.fixture
def own_tree(tmp_path):
    """A private copy for the tests that delete or overwrite files."""
    return make_camvid_clips(tmp_path)


def _frames(dataset, index):
    return dataset[index]["meta"]["frames"]


def test_video_clips_at_start_middle_and_end(tree):
    camvid, frames = tree
    dataset = CamVidClips(camvid, "train", clip_length=5, frames_root=frames)
    assert len(dataset) == 8  # one clip per labelled frame
    video, labelled = frames / "0001TP", camvid / "train"
    # start of 0001TP: 6688 is before the first extracted frame 6689, which is repeated
    meta = dataset[0]["meta"]
    assert meta["frames"] == [6689, 6689, 6690, 6691, 6692]
    assert meta["image_paths"] == [
        str(video / "0001TP_006689.png"),
        str(video / "0001TP_006689.png"),
        str(labelled / "0001TP_006690.png"),  # the centre is the labelled image itself
        str(video / "0001TP_006691.png"),
        str(video / "0001TP_006692.png"),
    ]
    assert meta["centre"] == 2 and meta["clip_source"] == "video" and meta["sequence"] == "0001TP"
    assert meta["label_path"] == str(camvid / "trainannot" / "0001TP_006690.png") and meta["has_label"]
    # middle
    assert _frames(dataset, 2) == [6748, 6749, 6750, 6751, 6752]
    # end of 0001TP: 6812 is after the last extracted frame 6811
    assert _frames(dataset, 4) == [6808, 6809, 6810, 6811, 6811]
    # 0006R0: flat JPEGs with an "f" in the name
    assert dataset[7]["meta"]["image_paths"] == [
        str(frames / "0006R0_f00988.jpg"),
        str(frames / "0006R0_f00989.jpg"),
        str(labelled / "0006R0_f00990.png"),
        str(frames / "0006R0_f00991.jpg"),
        str(frames / "0006R0_f00991.jpg"),
    ]
    assert _frames(dataset, 5) == [929, 929, 930, 931, 932]


def test_video_pixels_and_centre_labels(tree):
    camvid, frames = tree
    dataset = CamVidClips(camvid, "train", clip_length=5, frames_root=frames, transforms=raw_pair)
    item = dataset[0]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (5, 3, CLIP_H, CLIP_W)
    # frames 6689, 6689, 6690, 6691, 6692: R = number mod 256 (6656 = 26 * 256), G = 200 only if labelled
    assert item["image"][:, 0, 0, 0].tolist() == [33, 33, 34, 35, 36]
    assert item["image"][:, 1, 0, 0].tolist() == [0, 0, 200, 0, 0]
    assert item["mask"].dtype == torch.int64 and item["mask"].shape == (5, CLIP_H, CLIP_W)
    expected = np.stack([IGNORED, IGNORED, LABELS, IGNORED, IGNORED])
    np.testing.assert_array_equal(item["mask"].numpy(), expected)  # void 11 -> 255 as in camvid
    assert item["meta"]["label_paths"] == [None, None, item["meta"]["label_path"], None, None]
    assert item["meta"]["ori_size"] == (CLIP_H, CLIP_W)


def test_frame_step_and_labels_all(tree):
    camvid, frames = tree
    step10 = CamVidClips(camvid, "train", clip_length=3, frames_root=frames, frame_step=10, labels="all")
    meta = step10[0]["meta"]
    assert meta["frames"] == [6689, 6690, 6700]  # 6680 padded to 6689
    # 6700 is labelled in *val*, never in train: a video frame without label
    assert meta["image_paths"][2] == str(frames / "0001TP" / "0001TP_006700.png")
    np.testing.assert_array_equal(step10[0]["mask"].numpy(), np.stack([IGNORED, LABELS, IGNORED]))
    assert _frames(step10, 1) == [6710, 6720, 6730]

    # 30 video frames apart all clip frames are labelled train frames: "all" labels each, "centre" one
    step30_all = CamVidClips(camvid, "train", clip_length=3, frames_root=frames, frame_step=30, labels="all")
    meta = step30_all[1]["meta"]
    assert meta["frames"] == [6690, 6720, 6750]
    assert meta["image_paths"] == [str(camvid / "train" / f"0001TP_00{n}.png") for n in (6690, 6720, 6750)]
    assert meta["label_paths"] == [
        str(camvid / "trainannot" / f"0001TP_00{n}.png") for n in (6690, 6720, 6750)
    ]
    np.testing.assert_array_equal(step30_all[1]["mask"].numpy(), np.stack([LABELS, LABELS, LABELS]))
    step30_centre = CamVidClips(camvid, "train", clip_length=3, frames_root=frames, frame_step=30)
    np.testing.assert_array_equal(step30_centre[1]["mask"].numpy(), np.stack([IGNORED, LABELS, IGNORED]))


def test_even_clip_length_has_more_frames_before_the_labelled_one(tree):
    camvid, frames = tree
    four = CamVidClips(camvid, "train", clip_length=4, frames_root=frames)
    meta = four[2]["meta"]
    assert meta["centre"] == 2 and meta["frames"] == [6748, 6749, 6750, 6751]
    two = CamVidClips(camvid, "train", clip_length=2, frames_root=frames, frame_step=3)
    assert two[2]["meta"]["centre"] == 1 and _frames(two, 2) == [6747, 6750]
    one = CamVidClips(camvid, "train", clip_length=1, frames_root=frames)
    assert one[0]["image"].shape == (1, 3, CLIP_H, CLIP_W) and _frames(one, 0) == [6690]


def test_val_split_uses_its_own_labels(tree):
    camvid, frames = tree
    val = get_dataset("camvid_clips", camvid, "val", frames_root=frames, clip_length=3, labels="all")
    assert len(val) == 1
    meta = val[0]["meta"]
    # 6690 is a *train* label: read as a video frame, unlabelled
    assert meta["frames"] == [6699, 6700, 6701] and meta["image_paths"][1] == str(
        camvid / "val" / "0001TP_006700.png"
    )
    assert meta["label_paths"] == [None, str(camvid / "valannot" / "0001TP_006700.png"), None]


def test_labelled_only_fallback(tree, caplog):
    camvid, _ = tree
    with caplog.at_level(logging.WARNING, logger="ccnet"):
        dataset = CamVidClips(camvid, "train", clip_length=3)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "no frames_root given" in warnings[0] and "not consecutive video frames" in warnings[0]
    caplog.clear()
    # neighbouring labelled frames of the same sequence, repeated at the sequence ends
    assert [_frames(dataset, i) for i in range(8)] == [
        [6690, 6690, 6720],
        [6690, 6720, 6750],
        [6720, 6750, 6780],
        [6750, 6780, 6810],
        [6780, 6810, 6810],
        [930, 930, 960],
        [930, 960, 990],
        [960, 990, 990],
    ]
    assert not caplog.records  # said once, at construction, not per item
    assert dataset[5]["meta"]["image_paths"] == [
        str(camvid / "train" / name)
        for name in ("0006R0_f00930.png", "0006R0_f00930.png", "0006R0_f00960.png")
    ]
    assert {dataset[i]["meta"]["clip_source"] for i in range(8)} == {"labelled"}
    np.testing.assert_array_equal(dataset[0]["mask"].numpy(), np.stack([IGNORED, LABELS, IGNORED]))
    every = CamVidClips(camvid, "train", clip_length=3, labels="all")
    np.testing.assert_array_equal(every[0]["mask"].numpy(), np.stack([LABELS, LABELS, LABELS]))
    # frame_step counts labelled frames here
    assert _frames(CamVidClips(camvid, "train", clip_length=3, frame_step=2), 2) == [6690, 6750, 6810]


def test_missing_middle_frame(own_tree):
    camvid, frames = own_tree
    missing = frames / "0001TP" / "0001TP_006721.png"
    missing.unlink()
    with pytest.raises(DatasetError, match="1 of 8 clips") as error:
        CamVidClips(camvid, "train", clip_length=5, frames_root=frames)
    message = str(error.value)
    assert "video frame 6721 of sequence 0001TP is missing" in message and str(missing) in message
    # not needed with frame_step 2 (6716, 6718, 6720, 6722, 6724)
    CamVidClips(camvid, "train", clip_length=5, frames_root=frames, frame_step=2)
    # strict=False (ccnet data check) reports it when the clip is loaded
    lenient = CamVidClips(camvid, "train", clip_length=5, frames_root=frames, strict=False)
    with pytest.raises(DatasetError, match="video frame 6721 of sequence 0001TP is missing"):
        lenient[1]
    report = check_dataset("camvid_clips", camvid, "train", progress=False, frames_root=frames, clip_length=5)
    assert not report.ok and report.checked == 8
    assert [path for path, _ in report.bad_files] == [str(camvid / "train" / "0001TP_006720.png")]


def test_extraction_ends_move_the_padding_and_bound_the_labels(own_tree):
    camvid, frames = own_tree
    (frames / "0001TP" / "0001TP_006689.png").unlink()  # now 0001TP starts at 6690
    assert _frames(CamVidClips(camvid, "train", clip_length=5, frames_root=frames), 0) == [6690] * 3 + [
        6691,
        6692,
    ]
    (frames / "0001TP" / "0001TP_006690.png").unlink()  # now the labelled 6690 lies before the extraction
    with pytest.raises(
        DatasetError, match=r"frame 6690 of sequence 0001TP\) lies outside the extracted frames 6691\.\.6811"
    ):
        CamVidClips(camvid, "train", clip_length=5, frames_root=frames)


def test_clip_longer_than_sequence(tree):
    camvid, frames = tree
    with pytest.raises(DatasetError, match=r"clip_length 4 is longer than sequence 0006R0 \(3 frames"):
        CamVidClips(camvid, "train", clip_length=4)
    # 0006R0 has 63 extracted frames (929..991)
    with pytest.raises(DatasetError, match=r"clip_length 64 is longer than sequence 0006R0 \(63 frames"):
        CamVidClips(camvid, "train", clip_length=64, frames_root=frames)


def test_frames_of_different_sizes(own_tree):
    camvid, frames = own_tree
    odd = frames / "0001TP" / "0001TP_006691.png"
    Image.new("RGB", (2 * CLIP_W, 2 * CLIP_H)).save(odd)
    dataset = CamVidClips(camvid, "train", clip_length=5, frames_root=frames)
    with pytest.raises(DatasetError, match="differ in size") as error:
        dataset[0]
    assert f"{odd} is 16x32" in str(error.value) and "0001TP_006692.png is 8x16" in str(error.value)


def test_argument_errors(tree, tmp_path):
    camvid, frames = tree
    with pytest.raises(ValueError, match="clip_length must be an integer >= 1, got 0"):
        CamVidClips(camvid, "train", clip_length=0)
    with pytest.raises(ValueError, match="frame_step must be an integer >= 1, got -1"):
        CamVidClips(camvid, "train", frame_step=-1)
    with pytest.raises(ValueError, match=r"labels must be one of \('centre', 'all'\), got 'some'"):
        CamVidClips(camvid, "train", labels="some")
    with pytest.raises(DatasetError, match=f"frames_root {tmp_path / 'nowhere'} is not a directory"):
        CamVidClips(camvid, "train", frames_root=tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no extracted frames of sequence\\(s\\) 0006R0 under frames_root"):
        CamVidClips(camvid, "train", clip_length=3, frames_root=frames / "0001TP")


def test_duplicate_extracted_frame(own_tree):
    camvid, frames = own_tree
    shutil.copy(frames / "0006R0_f00950.jpg", frames / "0006R0_950.jpg")
    with pytest.raises(DatasetError, match="are both frame 950 of sequence 0006R0"):
        CamVidClips(camvid, "train", frames_root=frames)


def test_random_train_transform_is_shared_by_all_frames(tree):
    camvid, frames = tree
    # random resize (0.5-2x), crop, flip and photometric jitter; cat_max_ratio=1 draws one crop, so a single
    # frame transformed alone after the same seed must give exactly that frame of the clip
    pipeline = train_transforms((6, 12), cat_max_ratio=1.0)
    dataset = CamVidClips(camvid, "train", clip_length=3, frames_root=frames, transforms=pipeline)
    for seed in range(6):
        torch.manual_seed(seed)
        item = dataset[2]
        assert item["image"].shape == (3, 3, 6, 12) and item["mask"].shape == (3, 6, 12)
        images, labels = dataset.load_raw(2)
        for k in range(3):
            torch.manual_seed(seed)
            image, mask = pipeline(
                tv_tensors.Image(torch.from_numpy(images[k : k + 1]).permute(0, 3, 1, 2)),
                tv_tensors.Mask(torch.from_numpy(labels[k : k + 1].astype(np.uint8))),
            )
            torch.testing.assert_close(item["image"][k], image[0].as_subclass(torch.Tensor))
            assert torch.equal(item["mask"][k], mask[0].as_subclass(torch.Tensor).long())


def test_horizontal_flip_flips_every_frame_or_none(tree):
    camvid, frames = tree
    dataset = CamVidClips(
        camvid, "train", clip_length=5, frames_root=frames, transforms=v2.RandomHorizontalFlip(0.5)
    )
    raw = torch.from_numpy(dataset.load_raw(2)[0]).permute(0, 3, 1, 2)
    states = set()
    for seed in range(8):
        torch.manual_seed(seed)
        image = dataset[2]["image"]
        flipped = [torch.equal(image[k], raw[k].flip(-1)) for k in range(5)]
        kept = [torch.equal(image[k], raw[k]) for k in range(5)]
        assert all(flipped) or all(kept)
        states.add(all(flipped))
    assert states == {True, False}


def test_raw_validation_items_collate_and_options(tree):
    camvid, frames = tree
    options = {
        "clip_length": 5,
        "frames_root": str(frames),
        "frame_step": 1,
        "labels": "centre",
    }  # data.options
    val_like = get_dataset("camvid_clips", camvid, "train", transforms=raw_pair, **options)
    assert isinstance(val_like, CamVidClips) and val_like.name == "camvid_clips"
    batches = list(DataLoader(val_like, batch_size=4, collate_fn=collate))
    assert len(batches) == 2
    batch = batches[0]
    assert batch["image"].shape == (4, 5, 3, CLIP_H, CLIP_W) and batch["image"].dtype == torch.uint8
    assert batch["mask"].shape == (4, 5, CLIP_H, CLIP_W) and batch["mask"].dtype == torch.int64
    # every labelled frame is the centre of exactly one item, in video order
    centres = [m["frame"] for b in batches for m in b["meta"]]
    assert centres == [6690, 6720, 6750, 6780, 6810, 930, 960, 990]
    # normalised training items collate too
    train = get_dataset("camvid_clips", camvid, "train", transforms=train_transforms((6, 12)), **options)
    batch = collate([train[0], train[7]])
    assert batch["image"].shape == (2, 5, 3, 6, 12) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (2, 5, 6, 12)


def test_data_check(tree):
    camvid, frames = tree
    report = check_dataset("camvid_clips", camvid, "train", progress=False, frames_root=frames, clip_length=3)
    assert report.ok and report.checked == 8 and report.sizes == {(CLIP_H, CLIP_W): 8}
    # per clip: the centre frame's 4 stripes of 8x4 = 32 px (ids 3, 255, 8, 0) and 2 unlabelled 128-px frames
    expected = np.zeros(256, dtype=np.int64)
    expected[[3, 8, 0]] = 8 * 32
    expected[255] = 8 * (32 + 2 * 128)
    np.testing.assert_array_equal(report.histogram, expected)
