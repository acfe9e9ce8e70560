"""COCO evaluation (ccnet.engine.coco_eval) on hand-made cases whose AP follows by hand from COCO's rules:
10 IoU thresholds 0.50, 0.55, ..., 0.95; at each, precision made monotone and read at 101 recall points
0, 0.01, ..., 1; AP = the mean over thresholds and recall points. With one ground truth and one detection
matched at a threshold, that threshold scores 1, otherwise 0."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch import nn

from ccnet.data.coco import coco_dataset, coco_ground_truth, instance_eval_transforms
from ccnet.engine.coco_eval import CocoResults, InstanceMetrics, evaluate_instances, prediction_to_coco
from tests.data import coco_fakes
from tests.data.coco_fakes import EXPECTED, HEIGHT, POLYGON, WIDTH, rectangle

# pycocotools' decoder under numpy 2 warns about its own internals (the tests decode RLE with it)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


NAN = math.nan


pytestmark = pytest.mark.usefixtures("one_thread")


def _ground_truth(objects: dict[int, list[tuple[np.ndarray, int]]], categories=(1,)) -> COCO:
    """images ``{image_id: [(mask, iscrowd), ...]}`` of size 32x48, every object of the first category."""
    images, annotations = [], []
    for image_id, found in objects.items():
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": HEIGHT, "width": WIDTH})
        for mask, crowd in found:
            rle = coco_fakes.compressed_rle(mask)
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": categories[0],
                 "segmentation": rle, "area": float(mask.sum()), "bbox": coco_fakes.box_of(mask),
                 "iscrowd": crowd}
            )  # fmt: skip
    coco = COCO()
    coco.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c, "name": f"class{c}"} for c in categories],
    }
    coco.createIndex()
    return coco


def _prediction(*objects: tuple[np.ndarray, float], label: int = 1) -> dict[str, torch.Tensor]:
    """A torchvision-style prediction of rectangle masks (boxes = their tight boxes) and scores."""
    masks = torch.stack([torch.from_numpy(mask).float()[None] for mask, _ in objects])
    boxes = torch.tensor([coco_fakes.xyxy(coco_fakes.box_of(mask)) for mask, _ in objects])
    return {
        "boxes": boxes,
        "labels": torch.full((len(objects),), label),
        "scores": torch.tensor([score for _, score in objects]),
        "masks": masks,
    }


def _evaluate(gt: COCO, predictions: dict[int, dict], mapping=None) -> InstanceMetrics:
    results = CocoResults(gt, mapping or {1: 1})
    for image_id in gt.imgs:
        if image_id in predictions:
            results.add(image_id, predictions[image_id])
        else:  # predicted, but nothing found
            results.add(image_id, _empty())
    return results.evaluate()


def _empty() -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "scores": torch.zeros(0),
        "masks": torch.zeros(0, 1, HEIGHT, WIDTH),
    }


SQUARE = rectangle(2, 4, 12, 14)  # 10x10 = 100 px: a "small" object (area < 32^2)


def _expect(metrics: InstanceMetrics, ap, ap50, ap75, iou_types=("bbox", "segm")):
    for iou_type in iou_types:
        values = getattr(metrics, iou_type)
        assert values["AP"] == pytest.approx(ap) and values["APs"] == pytest.approx(ap)
        assert values["AP50"] == pytest.approx(ap50) and values["AP75"] == pytest.approx(ap75)
        assert math.isnan(values["APm"]) and math.isnan(values["APl"])  # no medium / large ground truth


def test_perfect_detection_scores_one():
    metrics = _evaluate(_ground_truth({1: [(SQUARE, 0)]}), {1: _prediction((SQUARE, 0.9))})
    _expect(metrics, 1.0, 1.0, 1.0)
    assert (
        metrics.box_ap == pytest.approx(1.0)
        and metrics.mask_ap == pytest.approx(1.0)
        and (metrics.num_images, metrics.num_detections) == (1, 1)
    )


def test_shifted_detection_scores_the_thresholds_its_iou_passes():
    """Shifted 2 px right: overlap 8x10, union 120, IoU 2/3 for the box and the mask alike; it passes the
    thresholds 0.50, 0.55, 0.60, 0.65 -> AP = 4/10, AP50 = 1, AP75 = 0."""
    shifted = rectangle(2, 6, 12, 16)
    metrics = _evaluate(_ground_truth({1: [(SQUARE, 0)]}), {1: _prediction((shifted, 0.9))})
    _expect(metrics, 0.4, 1.0, 0.0)
    # shifted 3 px: IoU 7/13 = 0.54 passes 0.50 only -> AP = 1/10
    metrics = _evaluate(_ground_truth({1: [(SQUARE, 0)]}), {1: _prediction((rectangle(2, 7, 12, 17), 0.9))})
    _expect(metrics, 0.1, 1.0, 0.0)


def test_detection_on_a_crowd_region_is_not_a_false_positive():
    """The higher-scored detection lies inside a crowd region. Ignored, the other one alone gives AP 1;
    counted as a false positive (the same detections without the crowd annotation), precision at full
    recall would be 1/2 -> AP 0.5."""
    crowd = rectangle(16, 20, 30, 44)
    inside_crowd, on_object = rectangle(18, 24, 28, 40), SQUARE
    predictions = {1: _prediction((inside_crowd, 0.9), (on_object, 0.8))}
    with_crowd = _evaluate(_ground_truth({1: [(SQUARE, 0), (crowd, 1)]}), predictions)
    _expect(with_crowd, 1.0, 1.0, 1.0)
    without_crowd = _evaluate(_ground_truth({1: [(SQUARE, 0)]}), predictions)
    _expect(without_crowd, 0.5, 0.5, 0.5)


def test_image_without_detections_counts_its_missed_objects():
    """Two images with one object each, found in image 1 only: recall 1/2 with precision 1 -> the recall
    points 0, 0.01, ..., 0.50 score 1 -> AP = 51/101; no detections at all -> AP 0."""
    gt = _ground_truth({1: [(SQUARE, 0)], 2: [(SQUARE, 0)]})
    half = _evaluate(gt, {1: _prediction((SQUARE, 0.9))})
    _expect(half, 51 / 101, 51 / 101, 51 / 101)
    assert half.num_images == 2
    nothing = _evaluate(gt, {})
    _expect(nothing, 0.0, 0.0, 0.0)
    assert nothing.num_detections == 0


def test_category_ids_round_trip_through_the_labels(tmp_path):
    """Categories 3, 7, 90 are labels 1, 2, 3: predicting the ground truth with its labels scores 1 and the
    results carry the category ids; the same detections with the labels of another mapping score 0."""
    dataset = coco_dataset(coco_fakes.make_coco2017(tmp_path / "coco"), "val")
    truth = {}
    for index, image_id in enumerate(dataset.image_ids):
        target = dataset[index][1]
        truth[image_id] = {
            "boxes": target["boxes"].as_subclass(torch.Tensor),
            "labels": target["labels"],
            "scores": torch.linspace(0.9, 0.5, len(target["labels"])),
            "masks": target["masks"][:, None].float(),
        }
    results = CocoResults(dataset.coco, dataset.label_to_category_id)
    for image_id, prediction in truth.items():
        results.add(image_id, prediction)
    assert [(r["image_id"], r["category_id"]) for r in results.results] == [(1, 3), (1, 7), (2, 90)]
    metrics = results.evaluate()
    assert metrics.bbox["AP"] == pytest.approx(1.0) and metrics.segm["AP"] == pytest.approx(1.0)

    swapped = CocoResults(dataset.coco, {1: 7, 2: 90, 3: 3})
    for image_id, prediction in truth.items():
        swapped.add(image_id, prediction)
    assert swapped.evaluate().bbox["AP"] == 0.0  # every category: its detections are of another


def test_results_are_in_original_image_coordinates():
    """A prediction made on the image enlarged 2x maps back: box halved, mask downsampled."""
    gt = _ground_truth({1: [(SQUARE, 0)]})
    big = np.kron(SQUARE, np.ones((2, 2), np.uint8))
    prediction = _prediction((big, 0.7))
    (entry,) = prediction_to_coco(prediction, 1, {1: 1}, original_size=(HEIGHT, WIDTH), input_size=(64, 96))
    assert entry["bbox"] == [4.0, 2.0, 10.0, 10.0] and entry["category_id"] == 1 and entry["image_id"] == 1
    assert entry["score"] == pytest.approx(0.7) and isinstance(entry["segmentation"]["counts"], str)
    np.testing.assert_array_equal(mask_utils.decode(entry["segmentation"]), SQUARE)
    results = CocoResults(gt, {1: 1})
    results.add(1, prediction, input_size=(64, 96))
    assert results.evaluate().mask_ap == pytest.approx(1.0)

    # the score threshold and unknown labels
    assert prediction_to_coco(prediction, 1, {1: 1}, original_size=(HEIGHT, WIDTH), score_threshold=0.8) == []
    with pytest.raises(ValueError, match="image id 1: predicted label 1 has no category id"):
        prediction_to_coco(prediction, 1, {2: 5}, original_size=(HEIGHT, WIDTH))
    with pytest.raises(ValueError, match="image id 9 is not in the ground truth"):
        results.add(9, prediction)


def test_shards_merge_into_one_evaluation():
    """Two halves of test_image_without_detections' perfect-on-image-1 case, merged: the same AP."""
    gt = _ground_truth({1: [(SQUARE, 0)], 2: [(SQUARE, 0)]})
    first, second = CocoResults(gt, {1: 1}), CocoResults(gt, {1: 1})
    first.add(1, _prediction((SQUARE, 0.9)))
    second.add(2, _empty())
    metrics = first.merge(second).evaluate()
    assert metrics.num_images == 2 and metrics.bbox["AP"] == pytest.approx(51 / 101)


def test_detections_file_is_read_by_pycocotools(tmp_path):
    gt = _ground_truth({1: [(SQUARE, 0)]})
    results = CocoResults(gt, {1: 1})
    results.add(1, _prediction((SQUARE, 0.9), (rectangle(20, 20, 30, 40), 0.3)))
    path = results.write(tmp_path / "detections.json")
    entries = json.loads(path.read_text())
    assert [sorted(e) for e in entries] == [["bbox", "category_id", "image_id", "score", "segmentation"]] * 2
    loaded = gt.loadRes(str(path))  # the official tool reads the file as the test server would
    assert len(loaded.anns) == 2


def test_boxes_only_give_no_mask_ap():
    prediction = _prediction((SQUARE, 0.9))
    del prediction["masks"]
    results = CocoResults(_ground_truth({1: [(SQUARE, 0)]}), {1: 1})
    results.add(1, prediction)
    metrics = results.evaluate()
    assert metrics.bbox["AP"] == pytest.approx(1.0) and metrics.segm is None and math.isnan(metrics.mask_ap)


def test_metrics_table_and_json_round_trip(tmp_path):
    metrics = InstanceMetrics(
        bbox={"AP": 0.4, "AP50": 1.0, "AP75": 0.0, "APs": 0.4, "APm": NAN, "APl": NAN},
        segm={"AP": 0.125, "AP50": 0.5, "AP75": 0.0, "APs": 0.125, "APm": NAN, "APl": NAN},
        num_images=2,
        num_detections=3,
    )
    lines = metrics.format_table().splitlines()
    assert lines[0].split() == ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    assert lines[1].split() == ["bbox", "40.00", "100.00", "0.00", "40.00", "-", "-"]
    assert lines[2].split() == ["segm", "12.50", "50.00", "0.00", "12.50", "-", "-"]
    path = metrics.to_json(tmp_path / "metrics.json")
    assert json.loads(path.read_text())["bbox"]["APm"] is None
    loaded = InstanceMetrics.from_json(path)
    assert loaded.to_dict() == metrics.to_dict() and math.isnan(loaded.segm["APl"])


class FixedDetector(nn.Module):
    """A torchvision-style detector returning fixed detections: the fake COCO tree's ground truth of the
    image it is shown (recognised by its corner pixel, see tests/data/coco_fakes.image_pixels), scaled to
    the input size."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))  # so that the model has a device
        self.calls = 0

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        assert not self.training
        self.calls += 1
        outputs = []
        for image in images:
            image_id = round(float(image[0, 0, 0]) * 255 / 40)
            height, width = image.shape[-2:]
            found = EXPECTED[image_id]
            masks = [_polygon_square() if mask is None else mask for _, _, mask in found]
            masks = torch.stack([torch.from_numpy(m).float()[None] for m in masks]) if found else None
            outputs.append(
                {
                    "boxes": torch.tensor([box for _, box, _ in found]).reshape(-1, 4)
                    * torch.tensor([width / WIDTH, height / HEIGHT] * 2),
                    "labels": torch.tensor([label for label, _, _ in found], dtype=torch.int64),
                    "scores": torch.full((len(found),), 0.9),
                    "masks": torch.nn.functional.interpolate(masks, size=(height, width))
                    if found
                    else torch.zeros(0, 1, height, width),
                }
            )
        return outputs


def _polygon_square() -> np.ndarray:
    x0, y0, x1, y1 = POLYGON[0], POLYGON[1], POLYGON[4], POLYGON[5]
    return rectangle(int(y0), int(x0), int(y1), int(x1))


def test_evaluate_instances_runs_a_model_over_a_dataset(tmp_path):
    """The detector reproduces the ground truth on images enlarged 2x: AP 1 for boxes and masks once the
    detections are mapped back; the crowd region and the image without objects change nothing."""
    root = coco_fakes.make_coco2017(tmp_path / "coco")
    dataset = coco_dataset(root, "val", transforms=instance_eval_transforms(64))
    model = FixedDetector().train()
    metrics = evaluate_instances(
        model, dataset, batch_size=2, progress=False, detections_path=tmp_path / "detections.json"
    )
    assert model.training and model.calls == 2
    assert metrics.bbox["AP"] == pytest.approx(1.0) and metrics.segm["AP"] == pytest.approx(1.0)
    assert metrics.num_images == 3
    assert metrics.num_detections == 3
    written = json.loads((tmp_path / "detections.json").read_text())
    assert sorted((e["image_id"], e["category_id"]) for e in written) == [(1, 3), (1, 7), (2, 90)]
    assert [e["bbox"] for e in written if e["category_id"] == 90] == [coco_fakes.box_of(coco_fakes.ZEBRA)]

    # the same ground truth built from generated targets (a built-in task's path)
    generated = coco_ground_truth(
        [((HEIGHT, WIDTH), coco_dataset(root, "val")[i][1]) for i in range(3)], dataset.classes,
        dataset.label_to_category_id,
    )  # fmt: skip
    assert evaluate_instances(FixedDetector(), _Relabelled(dataset, generated), progress=False).segm[
        "AP"
    ] == pytest.approx(1.0)


class _Relabelled(torch.utils.data.Dataset):
    """``dataset`` with another ground truth (what an instance task without annotation file exposes)."""

    def __init__(self, dataset, coco) -> None:
        self.dataset, self.coco, self.label_to_category_id = dataset, coco, dataset.label_to_category_id

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index]


def _tiny_torchvision_mask_rcnn(num_classes: int) -> nn.Module:
    """torchvision's own Mask R-CNN on a one-layer backbone: the real model's input and output formats."""
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU())
    backbone.out_channels = 8
    return MaskRCNN(
        backbone,
        min_size=32,
        max_size=64,
        rpn_anchor_generator=AnchorGenerator(sizes=((8, 16),), aspect_ratios=((0.5, 1.0, 2.0),)),
        box_roi_pool=MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2),
        mask_roi_pool=MultiScaleRoIAlign(["0"], output_size=14, sampling_ratio=2),
        box_head=TwoMLPHead(8 * 7 * 7, 32),  # narrow heads: the formats matter here, not the capacity
        box_predictor=FastRCNNPredictor(32, num_classes),
        mask_head=MaskRCNNHeads(8, [16], 1),
        mask_predictor=MaskRCNNPredictor(16, 16, num_classes),
        box_score_thresh=0.0,
        box_detections_per_img=20,
    )


def test_torchvision_mask_rcnn_trains_on_the_samples_and_is_evaluated(tmp_path):
    """The interface against torchvision's own model: a training step takes the dataset's targets, and the
    evaluation of its (untrained, random) detections yields valid COCO results in original coordinates."""
    from ccnet.data.coco import collate_instances, instance_train_transforms

    root = coco_fakes.make_coco2017(tmp_path / "coco")
    train = coco_dataset(root, "val", transforms=instance_train_transforms([32, 40], 64), drop_empty=True)
    model = _tiny_torchvision_mask_rcnn(train.num_classes).train()
    images, targets = collate_instances([train[0], train[1]])
    losses = model(images, targets)
    assert {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"} <= set(
        losses
    )
    sum(losses.values()).backward()

    dataset = coco_dataset(root, "val", transforms=instance_eval_transforms(64))  # evaluated at 2x
    path = tmp_path / "detections.json"
    metrics = evaluate_instances(model, dataset, batch_size=2, progress=False, detections_path=path)
    assert model.training and metrics.num_images == 3 and metrics.num_detections > 0
    for name in ("AP", "AP50", "AP75"):
        assert 0.0 <= metrics.bbox[name] <= 1.0 and 0.0 <= metrics.segm[name] <= 1.0
    for entry in json.loads(path.read_text()):
        x, y, w, h = entry["bbox"]
        assert entry["image_id"] in (1, 2, 3) and entry["category_id"] in (3, 7, 90)
        assert x >= -1e-3 and x + w <= WIDTH + 1e-3 and y >= -1e-3 and y + h <= HEIGHT + 1e-3
        assert entry["segmentation"]["size"] == [HEIGHT, WIDTH]
