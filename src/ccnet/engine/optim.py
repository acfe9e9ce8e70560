"""Optimiser and learning-rate schedule: SGD (or AdamW) + per-iteration poly decay with linear warm-up.

lr(i) = (base_lr - min_lr) * (1 - i / max_iters) ** power + min_lr for iteration i = 0 .. max_iters - 1
(mmsegmentation's ``PolyLR`` with ``eta_min``). During the first ``warmup_iters`` iterations that value is
scaled by a factor rising linearly from ``warmup_ratio`` to 1 (mmcv's linear warm-up).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["PolyLR", "build_optimizer", "poly_lr"]


def poly_lr(
    base_lr: float,
    iteration: int,
    max_iters: int,
    *,
    power: float = 0.9,
    min_lr: float = 0.0,
    warmup_iters: int = 0,
    warmup_ratio: float = 1e-6,
) -> float:
    """The learning rate of 0-based ``iteration`` (see the module docstring)."""
    progress = min(iteration, max_iters) / max_iters
    lr = (base_lr - min_lr) * (1.0 - progress) ** power + min_lr
    if iteration < warmup_iters:
        lr *= 1.0 - (1.0 - iteration / warmup_iters) * (1.0 - warmup_ratio)
    return lr


class PolyLR(LRScheduler):
    """:func:`poly_lr` for every parameter group; call ``step()`` once per iteration, after the optimiser."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_iters: int,
        *,
        power: float = 0.9,
        min_lr: float = 0.0,
        warmup_iters: int = 0,
        warmup_ratio: float = 1e-6,
    ) -> None:
        if max_iters < 1:
            raise ValueError(f"PolyLR: max_iters must be >= 1, got {max_iters}")
        self.max_iters, self.power, self.min_lr = max_iters, power, min_lr
        self.warmup_iters, self.warmup_ratio = warmup_iters, warmup_ratio
        super().__init__(optimizer)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the position (iteration, base learning rates) but keep this schedule's settings, so a
        resumed run follows its own config (e.g. a longer ``max_iters``)."""
        settings = {
            k: getattr(self, k) for k in ("max_iters", "power", "min_lr", "warmup_iters", "warmup_ratio")
        }
        super().load_state_dict(state_dict)
        self.__dict__.update(settings)

    def get_lr(self) -> list[float]:
        return [
            poly_lr(
                base,
                self.last_epoch,
                self.max_iters,
                power=self.power,
                min_lr=self.min_lr,
                warmup_iters=self.warmup_iters,
                warmup_ratio=self.warmup_ratio,
            )
            for base in self.base_lrs
        ]


def build_optimizer(
    parameters: Iterable[nn.Parameter],
    *,
    name: str = "sgd",
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """``"sgd"``: SGD with momentum and weight decay on every parameter (the recipes); ``"adamw"``: AdamW
    (decoupled weight decay), used by the tiny default config."""
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optim.name: unknown optimiser {name!r}; allowed: 'sgd', 'adamw'")
