"""CE2P's edge loss: edge ground truth from the labels, class-balanced weights, the total parsing loss."""

from __future__ import annotations

import math

import pytest
import torch

from ccnet.losses import SegmentationLoss, balanced_edge_cross_entropy, edge_class_weights, edge_target
from ccnet.models.ccnet import ParsingAux


def _batch() -> torch.Tensor:
    """(2, 4, 10): image 0 has class 0 on columns 0-1 and class 5 on 2-9; image 1 has class 3 on rows 0-1
    and 255 (ignore) on rows 2-3."""
    target = torch.full((2, 4, 10), 5, dtype=torch.int64)
    target[0, :, :2] = 0
    target[1, :2], target[1, 2:] = 3, 255
    return target


def test_edge_target_by_hand():
    # image 0: column 1 differs from its right neighbour (rows 0-3), column 2 from its lower-left one (rows
    # 0-2); dilated by 3x3: columns 0-3. Image 1: the only boundary touches ignore: no edge.
    expected = torch.zeros(2, 4, 10, dtype=torch.int64)
    expected[0, :, :4] = 1
    assert torch.equal(edge_target(_batch()), expected)
    # a horizontal boundary between rows 2 and 3 of a 6x3 map: row 2 marked, dilated to rows 1-3
    horizontal = torch.tensor([[1, 1, 1]] * 3 + [[2, 2, 2]] * 3)[None]
    assert edge_target(horizontal)[0].tolist() == [
        [0, 0, 0],
        [1, 1, 1],
        [1, 1, 1],
        [1, 1, 1],
        [0] * 3,
        [0] * 3,
    ]


def test_class_weights_by_hand():
    # 16 edge pixels out of 80: non-edge weight 16 / 80, edge weight 64 / 80
    assert edge_class_weights(edge_target(_batch())).tolist() == pytest.approx([0.2, 0.8])


def _edge_logits(size=(4, 10)) -> torch.Tensor:
    logits = torch.zeros(2, 2, *size)
    logits[:, 1] = math.log(3.0)  # p(edge) = 3/4 everywhere
    return logits


# 16 edge pixels weigh 0.8 with nll ln(4/3), 64 non-edge pixels weigh 0.2 with nll ln 4: equal total weights
EDGE_LOSS = (12.8 * math.log(4 / 3) + 12.8 * math.log(4.0)) / 25.6


def test_balanced_edge_loss_by_hand():
    assert balanced_edge_cross_entropy(_edge_logits(), _batch()).item() == pytest.approx(EDGE_LOSS)
    # constant logits at another size are upsampled (align_corners=True) to the same constants
    assert balanced_edge_cross_entropy(_edge_logits((2, 5)), _batch()).item() == pytest.approx(EDGE_LOSS)
    no_edges = torch.full((1, 4, 10), 2)
    assert balanced_edge_cross_entropy(_edge_logits()[:1], no_edges).item() == 0.0


def test_total_parsing_loss_by_hand():
    target = _batch()
    final = torch.zeros(2, 6, 4, 10)  # uniform: ln 6 per labelled pixel
    decoder = torch.zeros(2, 6, 4, 10)
    decoder[:, 5] = math.log(5.0)  # p(class 5) = 1/2, p(any other) = 1/10
    # labelled pixels: 32 of class 5 (nll ln 2), 8 of class 0 and 20 of class 3 (nll ln 10)
    decoder_ce = (32 * math.log(2.0) + 28 * math.log(10.0)) / 60
    losses = SegmentationLoss(aux_weight=0.4)(final, ParsingAux(decoder, _edge_logits()), target)
    assert losses["main"].item() == pytest.approx(math.log(6.0))
    assert losses["aux"].item() == pytest.approx(decoder_ce)
    assert losses["edge"].item() == pytest.approx(EDGE_LOSS)
    assert losses["loss"].item() == pytest.approx(math.log(6.0) + 0.4 * decoder_ce + EDGE_LOSS)
    ce2p = SegmentationLoss(aux_weight=1.0, edge_weight=1.0)(
        final, ParsingAux(decoder, _edge_logits()), target
    )
    assert ce2p["loss"].item() == pytest.approx(math.log(6.0) + decoder_ce + EDGE_LOSS)
    plain = SegmentationLoss(aux_weight=0.4)(final, decoder, target)
    assert "edge" not in plain and plain["loss"].item() == pytest.approx(math.log(6.0) + 0.4 * decoder_ce)
