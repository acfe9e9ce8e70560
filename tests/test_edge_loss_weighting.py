"""CE2P's edge loss, two properties the first tests left open, against values computed by hand:

- edge logits of another size are upsampled with ``align_corners=True`` (non-constant logits, where the two
  conventions differ);
- ``SegmentationLoss`` weighs the edge term by ``edge_weight`` (not only the default 1).
"""

from __future__ import annotations

import math

import pytest
import torch

from ccnet.losses import SegmentationLoss, balanced_edge_cross_entropy
from ccnet.models.ccnet import ParsingAux

# a 1 x 4 label row [0, 0, 1, 1]: the boundary marks column 1, dilated (3 x 3) to columns 0..2 -> edges
# [1, 1, 1, 0]; class weights [w_non_edge, w_edge] = [positives, negatives] / total = [3/4, 1/4]
TARGET = torch.tensor([[[0, 0, 1, 1]]])


def _nll(z: float, edge: bool) -> float:
    """-log softmax([0, z])[edge]."""
    return math.log1p(math.exp(-z)) if edge else math.log1p(math.exp(z))


def _expected(z: list[float]) -> float:
    weights = [0.25, 0.25, 0.25, 0.75]
    nll = [_nll(v, e) for v, e in zip(z, [True, True, True, False], strict=True)]
    return sum(w * n for w, n in zip(weights, nll, strict=True)) / sum(weights)


def test_edge_logits_upsampled_with_align_corners():
    logits = torch.zeros(1, 2, 1, 2, dtype=torch.float64)
    logits[0, 1, 0] = torch.tensor([0.0, 3.0])
    # align_corners=True: width 2 -> 4 samples x = 0, 1/3, 2/3, 1 -> edge logit z = 0, 1, 2, 3
    # (align_corners=False would give 0, 0.75, 2.25, 3)
    expected = _expected([0.0, 1.0, 2.0, 3.0])
    assert balanced_edge_cross_entropy(logits, TARGET).item() == pytest.approx(expected, rel=1e-6)
    assert expected != pytest.approx(_expected([0.0, 0.75, 2.25, 3.0]), rel=1e-3)


def test_edge_weight_scales_the_edge_term():
    final = torch.zeros(1, 3, 1, 4)  # uniform over 3 classes: ln 3 per pixel
    decoder = torch.zeros(1, 3, 1, 4)
    edge = torch.zeros(1, 2, 1, 4)
    edge[0, 1, 0] = torch.tensor([0.0, 1.0, 2.0, 3.0])
    edge_loss = _expected([0.0, 1.0, 2.0, 3.0])
    for edge_weight in (0.5, 2.0):
        losses = SegmentationLoss(aux_weight=0.4, edge_weight=edge_weight)(
            final, ParsingAux(decoder, edge), TARGET
        )
        assert losses["edge"].item() == pytest.approx(edge_loss, rel=1e-5)
        assert losses["loss"].item() == pytest.approx(
            math.log(3) + 0.4 * math.log(3) + edge_weight * edge_loss, rel=1e-5
        )
    no_edge = SegmentationLoss(aux_weight=0.4, edge_weight=0.0)(final, ParsingAux(decoder, edge), TARGET)
    assert "edge" not in no_edge and no_edge["loss"].item() == pytest.approx(1.4 * math.log(3), rel=1e-5)
