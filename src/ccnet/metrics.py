"""Segmentation metrics from an accumulated confusion matrix: per-class IoU and accuracy, mIoU, mAcc, aAcc.

The confusion matrix ``cm`` (K, K) int64 counts pixels with ``cm[target, prediction]``; pixels whose target is
``ignore_index`` (or outside 0..K-1) are not counted. A labelled pixel predicted as no class (the ignore
label or any value outside 0..K-1) goes to an extra "void" column K of a (K, K + 1) matrix
(``confusion_matrix(..., with_void=True)``, what :class:`ConfusionMatrix` accumulates): it is a false
negative of its true class and a false positive of no class. The matrix is accumulated on the tensors'
device and summed across processes with :meth:`ConfusionMatrix.all_reduce`.

Rules (those of the official Cityscapes evaluator):

- A labelled pixel predicted as no class (void column) counts as a false negative of its true class and a
  false positive of none (never clamped into a class).
- IoU_c = TP / (TP + FP + FN); a class absent from both predictions and ground truth has IoU NaN and is left
  out of the mean; a class that is predicted but absent from the ground truth has IoU 0 and counts.
- Acc_c = TP / (TP + FN) (recall); NaN for a class absent from the ground truth.
- mIoU / mAcc: means over the non-NaN classes; aAcc = correctly labelled pixels / labelled pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["ConfusionMatrix", "SegmentationMetrics", "confusion_matrix", "metrics_from_confusion"]


def confusion_matrix(
    prediction: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255, *, with_void: bool = False
) -> Tensor:
    """(K, K) int64 counts ``cm[target, prediction]`` over pixels with a label in 0..K-1.

    ``prediction`` and ``target`` are integer tensors of the same shape (any), on the same device. A labelled
    pixel whose prediction is not a class (``ignore_index`` or outside 0..K-1) is in no column of the (K, K)
    matrix; with ``with_void=True`` the result is (K, K + 1) and column K counts those pixels, so that
    :func:`metrics_from_confusion` scores them as false negatives of their true class.
    """
    if prediction.shape != target.shape:
        raise ValueError(
            f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} shapes differ"
        )
    K = num_classes
    columns = K + 1  # column K: a prediction that is no class
    target = target.reshape(-1).long()
    prediction = prediction.reshape(-1).long()
    valid = (target != ignore_index) & (target >= 0) & (target < K)
    predicted_column = torch.where(
        (prediction >= 0) & (prediction < K), prediction, torch.full_like(prediction, K)
    )
    # unlabelled pixels go to an extra bin K*(K+1) that is cut off: no boolean indexing, no host sync
    cells = torch.where(valid, target * columns + predicted_column, torch.full_like(target, K * columns))
    counts = torch.bincount(cells, minlength=K * columns + 1)[: K * columns].reshape(K, columns)
    return counts if with_void else counts[:, :K].contiguous()


@dataclass(frozen=True)
class SegmentationMetrics:
    """Scores of one evaluation (plain Python numbers; NaN where a class is undefined)."""

    iou: tuple[float, ...]  # per class
    acc: tuple[float, ...]  # per class
    miou: float
    macc: float
    aacc: float
    pixels: int  # labelled pixels counted

    def as_dict(self, classes: tuple[str, ...] | None = None) -> dict:
        """JSON-ready dict (NaN -> None) with per-class entries keyed by class name when given."""
        names = classes or tuple(str(k) for k in range(len(self.iou)))

        def clean(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {
            "mIoU": clean(self.miou),
            "mAcc": clean(self.macc),
            "aAcc": clean(self.aacc),
            "pixels": self.pixels,
            "per_class": {
                name: {"IoU": clean(i), "Acc": clean(a)}
                for name, i, a in zip(names, self.iou, self.acc, strict=True)
            },
        }


def metrics_from_confusion(cm: Tensor) -> SegmentationMetrics:
    """Scores of a confusion matrix ``cm[target, prediction]`` (see the module docstring): (K, K), or
    (K, K + 1) whose last column counts labelled pixels predicted as no class (false negatives only)."""
    cm = cm.double()
    K = cm.shape[0]
    if cm.dim() != 2 or cm.shape[1] not in (K, K + 1):
        raise ValueError(f"confusion matrix: expected shape (K, K) or (K, K + 1), got {tuple(cm.shape)}")
    void = cm[:, K:].sum(1)  # labelled pixels predicted as no class: zeros for a (K, K) matrix
    cm = cm[:, :K]
    true_positive = cm.diagonal()
    ground_truth = cm.sum(1) + void  # TP + FN
    predicted = cm.sum(0)  # TP + FP
    union = ground_truth + predicted - true_positive
    nan = torch.tensor(float("nan"), dtype=cm.dtype, device=cm.device)
    iou = torch.where(union > 0, true_positive / union.clamp(min=1), nan)
    acc = torch.where(ground_truth > 0, true_positive / ground_truth.clamp(min=1), nan)
    total = ground_truth.sum()  # labelled pixels, void predictions included
    aacc = (true_positive.sum() / total).item() if total > 0 else float("nan")
    iou_list, acc_list = iou.cpu().tolist(), acc.cpu().tolist()
    return SegmentationMetrics(
        iou=tuple(iou_list),
        acc=tuple(acc_list),
        miou=_nanmean(iou_list),
        macc=_nanmean(acc_list),
        aacc=aacc,
        pixels=int(total.item()),
    )


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


class ConfusionMatrix:
    """Accumulates a (K, K) confusion matrix on a device; ``all_reduce`` sums it over processes.

    >>> cm = ConfusionMatrix(3)
    >>> cm.update(torch.tensor([[0, 1], [2, 2]]), torch.tensor([[0, 1], [1, 255]]))
    >>> cm.compute().iou  # class 2 is predicted once but absent from the labels: IoU 0
    (1.0, 0.5, 0.0)
    """

    def __init__(self, num_classes: int, *, ignore_index: int = 255, device: torch.device | str = "cpu"):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        # (K, K + 1): the last column counts labelled pixels predicted as no class (see the module docstring)
        self.counts = torch.zeros(num_classes, num_classes + 1, dtype=torch.int64, device=device)

    @property
    def matrix(self) -> Tensor:
        """The (K, K) confusion matrix ``cm[target, prediction]`` (a view; void predictions left out)."""
        return self.counts[:, : self.num_classes]

    def update(self, prediction: Tensor, target: Tensor) -> None:
        """Add the pixels of integer label maps ``prediction`` and ``target`` (same shape, any device)."""
        device = self.counts.device
        self.counts += confusion_matrix(
            prediction.to(device), target.to(device), self.num_classes, self.ignore_index, with_void=True
        )

    def all_reduce(self) -> None:
        """Sum the matrices of all processes (no-op without an initialised process group)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(self.counts, op=dist.ReduceOp.SUM)

    def compute(self) -> SegmentationMetrics:
        return metrics_from_confusion(self.counts)
