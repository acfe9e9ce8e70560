"""Metrics against a hand-built confusion matrix: IoU/Acc per class, NaN rules, mIoU, aAcc."""

from __future__ import annotations

import math

import pytest
import torch

from ccnet.metrics import ConfusionMatrix, confusion_matrix, metrics_from_confusion

# (target, prediction) pixels: class 0 right 3x and once taken for 1; class 1 right 2x, once taken for 0
# and once for 2; class 2 is predicted but never labelled; class 3 is in neither (its only prediction falls
# on an ignored pixel, which does not count).
PIXELS = [(0, 0)] * 3 + [(0, 1)] + [(1, 1)] * 2 + [(1, 0), (1, 2)] + [(255, 3)]
EXPECTED_CM = [[3, 1, 0, 0], [1, 2, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]


def _maps() -> tuple[torch.Tensor, torch.Tensor]:
    target = torch.tensor([t for t, _ in PIXELS]).view(3, 3)
    prediction = torch.tensor([p for _, p in PIXELS]).view(3, 3)
    return prediction, target


def test_confusion_matrix_counts_target_rows_prediction_columns():
    prediction, target = _maps()
    cm = confusion_matrix(prediction, target, num_classes=4)
    assert cm.dtype == torch.int64
    assert cm.tolist() == EXPECTED_CM


def test_scores_by_hand():
    metrics = metrics_from_confusion(torch.tensor(EXPECTED_CM))
    # IoU = TP / (TP + FP + FN): class 0: 3 / (3 + 1 + 1); class 1: 2 / (2 + 1 + 2); class 2: 0 / 1
    assert metrics.iou[:3] == pytest.approx((0.6, 0.4, 0.0))
    assert math.isnan(metrics.iou[3])  # absent from predictions and labels: NaN, left out of the mean
    assert metrics.miou == pytest.approx((0.6 + 0.4 + 0.0) / 3)  # the predicted-but-absent class counts
    assert metrics.acc[:2] == pytest.approx((0.75, 0.5))
    assert math.isnan(metrics.acc[2]) and math.isnan(metrics.acc[3])  # no ground truth
    assert metrics.macc == pytest.approx(0.625)
    assert metrics.aacc == pytest.approx(5 / 8)  # the ignored pixel is not counted
    assert metrics.pixels == 8
    report = metrics.as_dict(("a", "b", "c", "d"))
    assert report["per_class"]["d"] == {"IoU": None, "Acc": None}
    assert report["mIoU"] == pytest.approx(1 / 3)


def test_accumulates_over_batches_and_any_shape():
    prediction, target = _maps()
    matrix = ConfusionMatrix(4)
    matrix.update(prediction[:1], target[:1])
    matrix.update(prediction[1:].flatten(), target[1:].flatten())
    assert matrix.matrix.tolist() == EXPECTED_CM
    matrix.all_reduce()  # no process group: unchanged
    assert matrix.compute().miou == pytest.approx(1 / 3)


def test_labels_outside_the_class_range_are_ignored_and_shapes_must_match():
    cm = confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 7, 1]), num_classes=2)
    assert cm.tolist() == [[1, 0], [0, 1]]
    with pytest.raises(ValueError, match="shapes differ"):
        confusion_matrix(torch.zeros(2, 3), torch.zeros(3, 2), num_classes=2)


def test_empty_matrix_is_all_nan():
    metrics = metrics_from_confusion(torch.zeros(3, 3, dtype=torch.int64))
    assert all(math.isnan(v) for v in (*metrics.iou, metrics.miou, metrics.aacc))


def test_a_void_prediction_on_a_labelled_pixel_is_a_false_negative_and_no_false_positive():
    # Hand-built case (the official Cityscapes evaluator's rule): 3 classes; class 0 labelled on 4 pixels,
    # predicted right twice, once as the ignore label 255 and once as 7 (no class); class 1 labelled twice,
    # right once and once taken for 0; class 2 labelled once and predicted right; one ignored pixel
    # predicted as 2 does not count.
    target = torch.tensor([0, 0, 0, 0, 1, 1, 2, 255])
    prediction = torch.tensor([0, 0, 255, 7, 1, 0, 2, 2])
    # class 0: TP 2, FN 2 (the two void predictions), FP 1 (the pixel of class 1)  -> IoU 2/5, Acc 2/4
    # class 1: TP 1, FN 1, FP 0                                                  -> IoU 1/2, Acc 1/2
    # class 2: TP 1, FN 0, FP 0 (the void predictions are nobody's false positive) -> IoU 1, Acc 1
    matrix = ConfusionMatrix(3)
    matrix.update(prediction, target)
    metrics = matrix.compute()
    assert metrics.iou == pytest.approx((2 / 5, 1 / 2, 1.0))
    assert metrics.acc == pytest.approx((2 / 4, 1 / 2, 1.0))
    assert metrics.miou == pytest.approx((2 / 5 + 1 / 2 + 1.0) / 3)
    assert metrics.aacc == pytest.approx(4 / 7)  # 4 right of 7 labelled pixels, void predictions included
    assert metrics.pixels == 7
    # the (K, K) matrix leaves the void predictions out of every column (nothing clamped into class 2)
    assert matrix.matrix.tolist() == [[2, 0, 0], [1, 1, 0], [0, 0, 1]]
    with_void = confusion_matrix(prediction, target, num_classes=3, with_void=True)
    assert with_void.tolist() == [[2, 0, 0, 2], [1, 1, 0, 0], [0, 0, 1, 0]]
    assert metrics_from_confusion(with_void) == metrics


def test_negative_predictions_are_void_too_and_bad_matrix_shapes_are_refused():
    metrics = metrics_from_confusion(
        confusion_matrix(torch.tensor([-1, 1]), torch.tensor([1, 1]), num_classes=2, with_void=True)
    )
    assert math.isnan(metrics.iou[0]) and metrics.iou[1] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="confusion matrix"):
        metrics_from_confusion(torch.zeros(3, 5, dtype=torch.int64))


def test_an_ignore_index_inside_the_class_range_drops_its_rows():
    # ignore_index=1 with K=3 (a dataset whose "unlabelled" class is 1, not 255). Pixels (target, prediction):
    # (0, 0) twice, (0, 2) once, (1, 0) and (1, 1) ignored, (2, 2) once, (2, 1) once, (255, 0) outside 0..K-1.
    target = torch.tensor([0, 0, 0, 1, 1, 2, 2, 255])
    prediction = torch.tensor([0, 0, 2, 0, 1, 2, 1, 0])
    cm = confusion_matrix(prediction, target, num_classes=3, ignore_index=1)
    # row 1 (the ignore label) is empty; a prediction of 1 on a labelled pixel counts in column 1 (as in
    # mmsegmentation's intersect_and_union, which masks the labels only)
    assert cm.tolist() == [[2, 0, 1], [0, 0, 0], [0, 1, 1]]
    matrix = ConfusionMatrix(3, ignore_index=1)
    matrix.update(prediction, target)
    assert matrix.matrix.tolist() == [[2, 0, 1], [0, 0, 0], [0, 1, 1]]
    assert matrix.compute().pixels == 5  # the two ignored and the out-of-range pixel are not counted
