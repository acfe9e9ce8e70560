"""Shared fixtures: random checkpoints in the published layouts (built once per session)."""

from __future__ import annotations

import pytest
import torch

from tests.models.published_layouts import MMSEG, random_checkpoint


@pytest.fixture(scope="session")
def mmseg_r50_checkpoint() -> dict:
    """An mmseg-style checkpoint file content: ``{"meta": ..., "state_dict": R-50-D8 CCNet, K=19}``."""
    state_dict = random_checkpoint(
        MMSEG, depth=50, stem_widths=(32, 32, 64), num_classes=19, aux_channels=256
    )
    return {"meta": {"mmseg_version": "0.5.0", "CLASSES": ("road", "sidewalk")}, "state_dict": state_dict}


@pytest.fixture(scope="session")
def image_batch() -> torch.Tensor:
    """(1, 3, 64, 64) normalised input."""
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
