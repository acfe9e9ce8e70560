"""The built-in instance task: the instance sample interface, the rule (every instance takes the marker's
colour as its class), determinism, flips that move boxes and masks with the image, and ground truth that
COCOeval scores 1.0 against itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes

from ccnet.data.instance_task import InstanceTaskDataset


@pytest.fixture(scope="module")
def dataset():
    return InstanceTaskDataset("val", length=6, seed=3)


def test_samples_follow_the_instance_interface(dataset):
    for index in range(len(dataset)):
        image, target = dataset[index]
        assert isinstance(image, tv_tensors.Image) and image.dtype == torch.float32
        assert image.shape == (3, 64, 64) and image.min() >= 0 and image.max() <= 1
        boxes, labels, masks = target["boxes"], target["labels"], target["masks"]
        assert isinstance(boxes, tv_tensors.BoundingBoxes) and boxes.format.name == "XYXY"
        assert isinstance(masks, tv_tensors.Mask) and masks.dtype == torch.uint8
        assert labels.dtype == torch.int64 and target["image_id"] == index
        n = len(labels)
        assert 4 <= n <= 6 and boxes.shape == (n, 4) and masks.shape == (n, 64, 64)  # 3-5 objects + marker
        # tight boxes, x2 / y2 one past the last pixel (torchvision's masks_to_boxes is inclusive)
        torch.testing.assert_close(
            boxes.as_subclass(torch.Tensor), masks_to_boxes(masks) + torch.tensor([0, 0, 1, 1])
        )
        assert masks.sum(0).max() == 1  # instances do not overlap


def test_every_instance_takes_the_colour_of_the_marker(dataset):
    for index in range(len(dataset)):
        image, target = dataset[index]
        labels, masks = target["labels"], target["masks"].bool()
        assert (labels == labels[0]).all() and 1 <= labels[0] <= 3
        # the marker is the one saturated instance: its dominant channel is the class (1 red, 2 green, 3 blue)
        colours = torch.stack([image[:, mask].mean(1) for mask in masks])  # (N, 3)
        saturation = colours.max(1).values - colours.min(1).values
        marker = int(saturation.argmax())
        assert saturation[marker] > 0.3 and saturation.sort().values[-2] < 0.1
        assert int(colours[marker].argmax()) + 1 == int(labels[0])
        assert masks[marker].sum() == 36  # the 6x6 marker


def test_deterministic_by_seed_split_and_index():
    a, b = InstanceTaskDataset("train", length=3, seed=1), InstanceTaskDataset("train", length=3, seed=1)
    torch.testing.assert_close(a[2][0], b[2][0])
    assert not torch.equal(a[2][0], InstanceTaskDataset("val", length=3, seed=1)[2][0])
    assert not torch.equal(a[2][0], InstanceTaskDataset("train", length=3, seed=2)[2][0])
    with pytest.raises(IndexError):
        a[3]
    with pytest.raises(ValueError, match="split"):
        InstanceTaskDataset("dev")
    with pytest.raises(ValueError, match="seed"):
        InstanceTaskDataset(seed=-1)


def test_flips_move_boxes_and_masks_with_the_image():
    plain = InstanceTaskDataset("train", length=1)
    flipping = InstanceTaskDataset("train", length=1, flip=True)
    image, target = plain[0]
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        got, got_target = flipping[0]
        flipped = not torch.equal(got, image)
        seen.add(flipped)
        expected_masks = target["masks"].flip(-1) if flipped else target["masks"]
        torch.testing.assert_close(
            got.as_subclass(torch.Tensor), (image.flip(-1) if flipped else image).as_subclass(torch.Tensor)
        )
        torch.testing.assert_close(
            got_target["masks"].as_subclass(torch.Tensor), expected_masks.as_subclass(torch.Tensor)
        )
        boxes = got_target["boxes"].as_subclass(torch.Tensor)
        torch.testing.assert_close(boxes, masks_to_boxes(got_target["masks"]) + torch.tensor([0, 0, 1, 1]))
    assert seen == {True, False}


def test_ground_truth_scores_one_against_itself(dataset):
    from pycocotools.cocoeval import COCOeval

    coco = dataset.coco
    assert sorted(coco.getImgIds()) == list(range(len(dataset)))
    assert len(coco.getAnnIds()) == sum(len(dataset[i][1]["labels"]) for i in range(len(dataset)))
    assert dataset.label_to_category_id == {1: 1, 2: 2, 3: 3} and dataset.num_classes == 4
    detections = [{**annotation, "score": 1.0, "id": None} for annotation in coco.loadAnns(coco.getAnnIds())]
    for iou_type in ("bbox", "segm"):
        results = coco.loadRes([{k: v for k, v in d.items() if k != "id"} for d in detections])
        evaluator = COCOeval(coco, results, iou_type)
        evaluator.evaluate(), evaluator.accumulate()
        evaluator.summarize()
        assert evaluator.stats[0] == pytest.approx(1.0)
    assert np.isfinite(coco.dataset["annotations"][0]["area"])
