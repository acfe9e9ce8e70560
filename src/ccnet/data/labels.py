"""Vectorised mapping of stored label values to training ids through a 256-entry lookup table.

A :class:`LabelMapping` holds ``table``: ``int64`` array ``(256,)`` where ``table[v]`` is the training id
(0..K-1 or 255 = ignore) of the stored value ``v``, or ``-1`` when ``v`` must not occur in a label file. One
fancy-indexing operation maps a whole label image and finds every invalid value at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ccnet.data.files import DatasetError
from ccnet.data.meta import CITYSCAPES_NUM_LABEL_IDS, CITYSCAPES_TRAIN_ID_TO_LABEL_ID, IGNORE_INDEX

INVALID = -1


@dataclass(frozen=True)
class LabelMapping:
    """Stored label value -> training id, with the set of allowed stored values.

    ``table``: ``int64`` ``(256,)``, ``INVALID`` (-1) for values that are errors. ``allowed`` describes the
    allowed stored values for error messages, e.g. ``"0..18 or 255"``.
    """

    table: np.ndarray
    allowed: str

    def __call__(self, stored: np.ndarray, path: str | Path = "<array>") -> np.ndarray:
        """Map ``stored`` (integer ``(H, W)``) to ``int64`` training ids, or raise naming ``path``."""
        if stored.dtype != np.uint8:
            too_large = stored > 255
            if too_large.any():
                raise DatasetError(
                    f"label {path} has values {_few(np.unique(stored[too_large]))} outside the allowed "
                    f"{self.allowed}"
                )
            stored = stored.astype(np.uint8)
        mapped = self.table[stored]
        invalid = mapped == INVALID
        if invalid.any():
            raise DatasetError(
                f"label {path} has values {_few(np.unique(stored[invalid]))} "
                f"outside the allowed {self.allowed}"
            )
        return mapped


def _few(values: np.ndarray, limit: int = 10) -> str:
    shown = [int(v) for v in values[:limit]]
    return str(shown) if len(values) <= limit else f"{str(shown)[:-1]}, ... ({len(values)} values)]"


def _table(mapping: Mapping[int, int]) -> np.ndarray:
    table = np.full(256, INVALID, dtype=np.int64)
    for stored, train_id in mapping.items():
        table[stored] = train_id
    return table


def index_labels(num_classes: int, ignore_value: int = IGNORE_INDEX) -> LabelMapping:
    """Labels already stored as training ids ``0..K-1``; ``ignore_value`` becomes 255."""
    if not 0 < num_classes <= 255:
        raise ValueError(
            f"num_classes must be in 1..255 (masks are 8-bit with 255 = ignore), got {num_classes}"
        )
    if not num_classes <= ignore_value <= 255:
        raise ValueError(f"ignore value {ignore_value} must be in {num_classes}..255 (not a class index)")
    mapping = {value: value for value in range(num_classes)}
    mapping[ignore_value] = IGNORE_INDEX
    return LabelMapping(_table(mapping), f"[0, {num_classes}) or ignore {ignore_value}")


def reduce_zero_label(num_classes: int) -> LabelMapping:
    """ADE20K style: stored 0 ("other") -> 255, stored ``c`` in 1..K -> ``c - 1``; 255 stays ignored."""
    mapping = {value: value - 1 for value in range(1, num_classes + 1)}
    mapping[0] = IGNORE_INDEX
    mapping[IGNORE_INDEX] = IGNORE_INDEX
    return LabelMapping(_table(mapping), f"0..{num_classes} (0 = ignored 'other') or 255")


def cityscapes_label_ids() -> LabelMapping:
    """Cityscapes ``*_labelIds.png``: the 19 evaluated labelIds -> trainIds 0..18, ids 0..33 else -> 255."""
    mapping = dict.fromkeys(range(CITYSCAPES_NUM_LABEL_IDS), IGNORE_INDEX)
    mapping.update({label_id: train_id for train_id, label_id in enumerate(CITYSCAPES_TRAIN_ID_TO_LABEL_ID)})
    mapping[IGNORE_INDEX] = IGNORE_INDEX
    return LabelMapping(_table(mapping), f"labelIds 0..{CITYSCAPES_NUM_LABEL_IDS - 1} or 255")


def void_to_ignore(num_classes: int, void_value: int) -> LabelMapping:
    """Classes ``0..K-1`` kept, a dataset's own void value (CamVid: 11) and 255 -> 255."""
    mapping = {value: value for value in range(num_classes)}
    mapping[void_value] = IGNORE_INDEX
    mapping[IGNORE_INDEX] = IGNORE_INDEX
    return LabelMapping(_table(mapping), f"[0, {num_classes}), void {void_value} or 255")
