"""The attention explorer's click -> cell mapping at the edges of the shown image: clicks on the last
row / column and past the image (the clamp) pick the last cell, negative ones the first. Oracle: the cell
of shown pixel (x, y) is (y * grid_h // shown_h, x * grid_w // shown_w) with x, y clamped into the image,
by hand for a 64 x 96 image shown at 128 x 192 over a 16 x 24 grid."""

from __future__ import annotations

import numpy as np
import torch

from ccnet.app.handlers import attention_views, segment, shown_image
from ccnet.app.models import AppModel
from ccnet.models import create_model

CASES = [
    (191, 127, (15, 23)),  # the last shown pixel
    (192, 128, (15, 23)),  # on the far edges: clamped to the last pixel
    (500, 300, (15, 23)),  # far outside
    (-3, -1, (0, 0)),
    (7.9, 7.9, (0, 0)),  # shown pixels 0..7 are cell 0 (x2 enlargement, stride 4)
    (8, 8, (1, 1)),
]


def test_click_at_the_edges_picks_the_cell_by_hand():
    torch.manual_seed(0)
    model = create_model("ccnet_tiny", num_classes=4).eval()
    tiny = AppModel(model, "ccnet_tiny", [f"c{i}" for i in range(4)], [(0, 0, 0)] * 4, "tiny")
    image = np.random.default_rng(1).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    result = segment(tiny, image)
    assert shown_image(result).shape == (128, 192, 3)
    for x, y, cell in CASES:  # the weights are recorded on the first click and reused
        views = attention_views(tiny, result, x=x, y=y)
        assert (views.grid, views.cell) == ((16, 24), cell), (x, y)


def test_click_on_an_image_whose_grid_is_rounded_up():
    """30 x 90 (shown x2: 60 x 180): stride-2 convolutions round up, 30 -> 15 -> 8 rows and 90 -> 45 -> 23
    columns, so the grid's aspect (8 : 23) is not the image's (1 : 3); each axis maps with its own ratio:
    row = y * 8 // 60, column = x * 23 // 180."""
    torch.manual_seed(0)
    model = create_model("ccnet_tiny", num_classes=4).eval()
    tiny = AppModel(model, "ccnet_tiny", [f"c{i}" for i in range(4)], [(0, 0, 0)] * 4, "tiny")
    image = np.random.default_rng(1).integers(0, 255, (30, 90, 3), dtype=np.uint8)
    result = segment(tiny, image)
    assert shown_image(result).shape == (60, 180, 3)
    for x, y, cell in [(179, 59, (7, 22)), (90, 30, (4, 11)), (0, 0, (0, 0))]:
        views = attention_views(tiny, result, x=x, y=y)
        assert (views.grid, views.cell) == ((8, 23), cell), (x, y)
