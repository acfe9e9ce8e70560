"""COCO evaluation (ccnet.engine.coco_eval), two properties the first tests left open, each against AP values
derived by hand from COCO's rules (see tests/engine/test_coco_eval.py):

- mask AP puts detections in the size ranges by their mask area, box AP by their box area (detectron2's
  convention, the module docstring's promise);
- a detection scoring exactly ``score_threshold`` is kept ("scores below the threshold dropped").
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from ccnet.engine.coco_eval import CocoResults, prediction_to_coco
from tests.data import coco_fakes
from tests.data.coco_fakes import HEIGHT, WIDTH, rectangle

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SQUARE = rectangle(2, 4, 12, 14)  # 10x10 = 100 px: a small object (area <= 32^2)


def _frame() -> np.ndarray:
    """A one-pixel outline of rows 0..31, columns 14..47: 128 px of mask (small) in a 34x32 = 1088 px box
    (medium: over 32^2 = 1024). It does not touch SQUARE (columns 4..13)."""
    mask = rectangle(0, 14, 32, 48)
    mask[1:-1, 15:-1] = 0
    return mask


def _ground_truth() -> COCO:
    rle = coco_fakes.compressed_rle(SQUARE)
    coco = COCO()
    coco.dataset = {
        "images": [{"id": 1, "file_name": "1.png", "height": HEIGHT, "width": WIDTH}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": rle, "area": 100.0,
             "bbox": coco_fakes.box_of(SQUARE), "iscrowd": 0}
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }  # fmt: skip
    coco.createIndex()
    return coco


def _prediction(*objects: tuple[np.ndarray, float]) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor([coco_fakes.xyxy(coco_fakes.box_of(mask)) for mask, _ in objects]),
        "labels": torch.ones(len(objects), dtype=torch.int64),
        "scores": torch.tensor([score for _, score in objects]),
        "masks": torch.stack([torch.from_numpy(mask).float()[None] for mask, _ in objects]),
    }


def test_mask_ap_sizes_detections_by_mask_area_box_ap_by_box_area():
    """A false positive (the frame, score 0.95) ranked above the true positive (SQUARE, 0.9).

    Over all sizes it halves the precision at full recall: AP = 0.5 for both IoU types (the monotone
    precision is 1/2 at every recall point, at every IoU threshold). In the small range it counts only where
    its area is small: its mask (128 px) is, so mask APs = 0.5; its box (1088 px) is not, so box APs = 1.
    """
    frame = _frame()
    assert frame.sum() == 128 and coco_fakes.box_of(frame)[2:] == [34.0, 32.0]
    results = CocoResults(_ground_truth(), {1: 1})
    results.add(1, _prediction((frame, 0.95), (SQUARE, 0.9)))
    metrics = results.evaluate()
    assert metrics.segm["AP"] == pytest.approx(0.5) and metrics.bbox["AP"] == pytest.approx(0.5)
    assert metrics.segm["APs"] == pytest.approx(0.5)
    assert metrics.bbox["APs"] == pytest.approx(1.0)


def test_detection_scoring_exactly_the_threshold_is_kept():
    prediction = _prediction((SQUARE, 0.5), (rectangle(20, 20, 30, 30), 0.25))  # exact in binary
    kept = prediction_to_coco(prediction, 1, {1: 1}, original_size=(HEIGHT, WIDTH), score_threshold=0.5)
    assert [entry["score"] for entry in kept] == [0.5]
    results = CocoResults(_ground_truth(), {1: 1})
    results.add(1, prediction, score_threshold=0.5)
    assert results.evaluate().num_detections == 1


def test_boxes_map_back_with_each_axis_own_scale():
    """Predicted on the image stretched 2x in height only (64 x 48): y halves, x stays. SQUARE's box
    [x, y, w, h] = [4, 2, 10, 10] is [4, 4, 14, 24] XYXY at the input size."""
    tall = np.kron(SQUARE, np.ones((2, 1), np.uint8))
    prediction = _prediction((tall, 0.9))
    assert prediction["boxes"].tolist() == [[4.0, 4.0, 14.0, 24.0]]
    (entry,) = prediction_to_coco(prediction, 1, {1: 1}, original_size=(HEIGHT, WIDTH), input_size=(64, 48))
    assert entry["bbox"] == [4.0, 2.0, 10.0, 10.0]
