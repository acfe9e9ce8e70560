"""Helpers shared by the model tests."""

from __future__ import annotations

import torch
from torch import nn


def randomise(model: nn.Module, seed: int = 0, gamma: float = 0.8) -> nn.Module:
    """Non-trivial BatchNorm affine weights and statistics, and a non-zero attention ``gamma``: fresh
    models are too close to trivial (identity BN, gamma 0 makes the attention a no-op) for comparisons."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + 0.5 * torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(gamma)
    return model
