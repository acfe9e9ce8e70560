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

__all__ = ["PolyLR", "build_optimizer", "poly_lr", "set_hyperparameters"]


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
        """Restore the position (the iteration) but keep this schedule's settings and base learning rates,
        so a resumed run follows its own config (e.g. a longer ``max_iters``, a lower ``optim.lr``).

        Call it after ``optimizer.load_state_dict``, which brings back the learning rates of the saved run:
        every group's ``lr`` is set again from this schedule at the restored iteration (the same value
        ``step()`` gives, so an unchanged config resumes bit for bit).
        """
        settings = {
            k: getattr(self, k)
            for k in ("max_iters", "power", "min_lr", "warmup_iters", "warmup_ratio", "base_lrs")
        }
        super().load_state_dict(state_dict)
        self.__dict__.update(settings)
        values = self.get_lr()
        for group, base, lr in zip(self.optimizer.param_groups, self.base_lrs, values, strict=True):
            group["initial_lr"], group["lr"] = base, lr
        self._last_lr = values

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


def set_hyperparameters(optimizer: torch.optim.Optimizer, **values: float) -> None:
    """Set ``values`` (e.g. ``weight_decay``, ``momentum``) in every parameter group that has such a
    setting: ``optimizer.load_state_dict`` restores the saved run's, a resumed run uses its config's."""
    for group in optimizer.param_groups:
        for key, value in values.items():
            if key in group:
                group[key] = value
