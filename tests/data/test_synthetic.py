"""The built-in context datasets: the generator's rule, determinism, configuration, video, loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ccnet.data import ContextDataset, ContextVideoDataset, collate, get_dataset, train_transforms


def _is_grey(image: np.ndarray) -> np.ndarray:
    """bool (..., H, W): R == G == B."""
    return (image[..., 0] == image[..., 1]) & (image[..., 1] == image[..., 2])


def _gaps_to_box(mask: np.ndarray, top: int, left: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis pixel distances from the True pixels of ``mask`` (H, W) to a ``size`` square box."""
    ys, xs = np.nonzero(mask)
    gap_y = np.maximum(top - ys, ys - (top + size - 1))
    gap_x = np.maximum(left - xs, xs - (left + size - 1))
    return gap_y, gap_x


def test_default_dataset_is_the_context_task():
    dataset = get_dataset()
    assert isinstance(dataset, ContextDataset) and dataset.split == "train"
    assert dataset.classes == ("background", "red", "green", "blue") and dataset.num_classes == 4
    assert len(dataset.palette) == 4 and dataset.ignore_index == 255
    item = dataset[0]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (64, 64) and item["mask"].dtype == torch.int64
    assert item["meta"]["ori_size"] == (64, 64) and item["meta"]["dataset"] == "context"


@pytest.mark.parametrize("placement", ["anywhere", "corner", "off_axis"])
def test_the_rule(placement):
    dataset = ContextDataset("val", length=40, marker_placement=placement)
    classes_seen = set()
    for index in range(len(dataset)):
        image, label, info = dataset.generate(index)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and label.dtype == np.int64
        c = info["context_class"]
        classes_seen.add(c)
        assert set(np.unique(label).tolist()) == {0, c}
        assert 3 <= len(info["object_boxes"]) <= 5

        # the marker: 6x6, labelled c, coloured in c's channel; it is the only colour in the image
        my, mx = info["marker_yx"]
        marker = np.zeros((64, 64), dtype=bool)
        marker[my : my + 6, mx : mx + 6] = True
        assert bool((label[marker] == c).all())
        assert int(np.argmax(image[marker].mean(axis=0))) == c - 1  # red, green, blue = channels 0, 1, 2
        assert bool(_is_grey(image)[~marker].all())

        # every other labelled pixel is an object pixel, kept away from the marker
        gap_y, gap_x = _gaps_to_box((label == c) & ~marker, my, mx, 6)
        assert gap_y.size > 0
        if placement == "off_axis":
            assert bool((np.minimum(gap_y, gap_x) > 12).all())  # away along both axes
        else:
            assert bool((np.maximum(gap_y, gap_x) > 12).all())
    assert classes_seen == {1, 2, 3}


def test_corner_placement_puts_the_marker_in_a_corner():
    dataset = ContextDataset(length=20, marker_placement="corner")
    for index in range(len(dataset)):
        my, mx = dataset.generate(index)[2]["marker_yx"]
        assert min(my, 58 - my) <= 2 and min(mx, 58 - mx) <= 2


def test_deterministic_per_index_and_independent_of_order():
    first = ContextDataset(seed=3)
    image, label, info = first.generate(7)
    fresh = ContextDataset(seed=3)
    for index in range(7):  # generating other samples first must not change sample 7
        fresh.generate(index)
    again = fresh.generate(7)
    np.testing.assert_array_equal(image, again[0])
    np.testing.assert_array_equal(label, again[1])
    assert info == again[2]


def test_seed_and_split_change_the_samples():
    base = ContextDataset(seed=0).generate(0)[0]
    assert not np.array_equal(base, ContextDataset(seed=1).generate(0)[0])
    assert not np.array_equal(base, ContextDataset("val", seed=0).generate(0)[0])
    assert not np.array_equal(base, ContextDataset(seed=0).generate(1)[0])


def test_any_size_and_configurable_difficulty():
    dataset = ContextDataset(
        length=5, image_size=96, num_objects=(1, 2), object_size=(6, 6), marker_size=4, min_marker_distance=30
    )
    assert len(dataset) == 5 and dataset.crop_size == (96, 96)
    image, label, info = dataset.generate(4)
    assert image.shape == (96, 96, 3) and 1 <= len(info["object_boxes"]) <= 2
    my, mx = info["marker_yx"]
    marker = np.zeros((96, 96), dtype=bool)
    marker[my : my + 4, mx : mx + 4] = True
    gap_y, gap_x = _gaps_to_box((label > 0) & ~marker, my, mx, 4)
    assert bool((np.maximum(gap_y, gap_x) > 30).all())
    assert all(size == 6 for _, _, size in info["object_boxes"])


@pytest.mark.parametrize(
    "config",
    [
        {"marker_placement": "middle"},
        {"num_objects": (4, 2)},
        {"object_size": (8, 100)},
        {"marker_size": 0},
        {"min_marker_distance": -1},
    ],
)
def test_invalid_configuration(config):
    with pytest.raises(ValueError):
        ContextDataset(**config)


def test_infeasible_configuration_is_reported():
    with pytest.raises(ValueError, match="no object fits"):
        ContextDataset(image_size=24, min_marker_distance=20, object_size=(10, 12)).generate(0)


def test_root_and_unknown_split_are_rejected():
    with pytest.raises(ValueError, match="takes no root"):
        get_dataset("context", "/data")
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        get_dataset("context", split="validation")


def test_video_rule():
    dataset = get_dataset("context_video", split="val", length=12, clip_length=4)
    marker_frames = set()
    for index in range(len(dataset)):
        clip, labels, info = dataset.generate(index)
        assert clip.shape == (4, 64, 64, 3) and labels.shape == (4, 64, 64)
        c, t = info["context_class"], info["marker_frame"]
        marker_frames.add(t)
        grey = _is_grey(clip)  # (T, H, W)
        for frame in range(4):
            assert bool(grey[frame].all()) == (frame != t)  # the colour cue is in one frame only
            assert set(np.unique(labels[frame]).tolist()) == {0, c}  # objects are class c in every frame
        my, mx = info["marker_yx"]
        assert bool((labels[t, my : my + 6, mx : mx + 6] == c).all())
        others = [f for f in range(4) if f != t]
        assert bool((labels[others, my : my + 6, mx : mx + 6] == 0).all())
        for frame in range(4):  # motion never brings an object near the marker
            gap_y, gap_x = _gaps_to_box(labels[frame] == c, my, mx, 6)
            if frame != t:
                assert bool((np.maximum(gap_y, gap_x) > 12).all())
    assert len(marker_frames) > 1  # "random" marker frame


def test_video_marker_frame_options_and_items():
    first = ContextVideoDataset(clip_length=3, marker_frame="first", length=4)
    assert {first.generate(i)[2]["marker_frame"] for i in range(4)} == {0}
    fixed = ContextVideoDataset(clip_length=3, marker_frame=2, length=4)
    item = fixed[1]
    assert item["image"].shape == (3, 3, 64, 64) and item["mask"].shape == (3, 64, 64)
    assert item["meta"]["marker_frame"] == 2 and item["meta"]["dataset"] == "context_video"
    with pytest.raises(ValueError, match="marker_frame"):
        ContextVideoDataset(clip_length=3, marker_frame=3)


def test_objects_drift_at_most_max_shift_per_frame():
    dataset = ContextVideoDataset(clip_length=5, max_shift=1, length=6, num_objects=(1, 1))
    for index in range(len(dataset)):
        _, labels, info = dataset.generate(index)
        t = info["marker_frame"]
        centres = []
        for frame in range(5):
            object_pixels = labels[frame] > 0
            if frame == t:  # leave the marker out
                my, mx = info["marker_yx"]
                object_pixels[my : my + 6, mx : mx + 6] = False
            ys, xs = np.nonzero(object_pixels)
            centres.append((ys.mean(), xs.mean()))
        steps = np.abs(np.diff(np.array(centres), axis=0))
        assert bool((steps <= 1.0 + 1e-9).all())


def test_dataloader_with_workers_matches_in_process():
    dataset = get_dataset("context", length=8, transforms=None)
    serial = list(DataLoader(dataset, batch_size=4, num_workers=0, collate_fn=collate))
    parallel = list(DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate))
    assert len(parallel) == 2
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
        assert [m["index"] for m in a["meta"]] == [m["index"] for m in b["meta"]]


def test_training_transforms_apply_to_the_context_task():
    torch.manual_seed(0)
    dataset = ContextDataset(length=4, transforms=train_transforms((48, 48), scale=None))
    batch = collate([dataset[i] for i in range(4)])
    assert batch["image"].shape == (4, 3, 48, 48) and batch["mask"].shape == (4, 48, 48)
    assert set(batch["mask"].unique().tolist()) <= {0, 1, 2, 3, 255}


def test_collate_rejects_mixed_sizes():
    small = ContextDataset(length=1, image_size=32)[0]
    large = ContextDataset(length=1)[0]
    with pytest.raises(ValueError, match="cannot stack items of different sizes"):
        collate([small, large])
