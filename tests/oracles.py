"""Independent reference implementations used as test oracles (never imported by the package)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def criss_cross_mask(grid: tuple[int, ...]) -> Tensor:
    """(N, N) bool over the flattened grid: True where two positions differ in at most one coordinate."""
    coords = torch.stack(torch.meshgrid(*[torch.arange(s) for s in grid], indexing="ij"), dim=-1)
    coords = coords.reshape(-1, len(grid))  # (N, n)
    same = (coords[:, None, :] == coords[None, :, :]).sum(-1)  # (N, N) number of shared coordinates
    return same >= len(grid) - 1


def dense_criss_cross(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Full (N x N) attention over the flattened grid with every non-criss-cross pair masked out.

    query/key (B, C', *grid), value (B, C, *grid) -> (B, C, *grid).
    """
    grid = tuple(query.shape[2:])
    mask = criss_cross_mask(grid).to(query.device)
    q, k, v = query.flatten(2), key.flatten(2), value.flatten(2)  # (B, C, N)
    energy = torch.einsum("bcu,bci->bui", q, k).masked_fill(~mask, float("-inf"))
    attention = energy.softmax(dim=-1)  # (B, N, N)
    out = torch.einsum("bui,bci->bcu", attention, v)
    return out.reshape(*value.shape)


def dense_cca_block(x: Tensor, module: torch.nn.Module) -> Tensor:
    """One CCA block in the paper's order: v = value_conv(x); y = gamma * attention(q, k, v) + x."""
    conv = F.conv2d if x.dim() == 4 else F.conv3d
    q = conv(x, module.query_conv.weight, module.query_conv.bias)
    k = conv(x, module.key_conv.weight, module.key_conv.bias)
    v = conv(x, module.value_conv.weight, module.value_conv.bias)
    return module.gamma * dense_criss_cross(q, k, v) + x


def numel(grid: tuple[int, ...]) -> int:
    return math.prod(grid)
