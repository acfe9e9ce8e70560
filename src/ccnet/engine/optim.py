"""Optimiser and learning-rate schedules: SGD (or AdamW) + per-iteration poly or step decay with linear
warm-up.

Poly (segmentation): lr(i) = (base_lr - min_lr) * (1 - i / max_iters) ** power + min_lr for iteration
i = 0 .. max_iters - 1 (mmsegmentation's ``PolyLR`` with ``eta_min``). Multi-step (Mask R-CNN's 1x
recipe, maskrcnn-benchmark's ``WarmupMultiStepLR``): lr(i) = base_lr * gamma ** (number of milestones
<= i). During the first ``warmup_iters`` iterations either value is scaled by a factor rising linearly from
``warmup_ratio`` to 1 (mmcv's and maskrcnn-benchmark's linear warm-up).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

__all__ = [
    "MultiStepLR",
    "PolyLR",
    "build_optimizer",
    "build_scheduler",
    "multistep_lr",
    "poly_lr",
    "set_hyperparameters",
]


def _warmup_factor(iteration: int, warmup_iters: int, warmup_ratio: float) -> float:
    if iteration >= warmup_iters:
        return 1.0
    return 1.0 - (1.0 - iteration / warmup_iters) * (1.0 - warmup_ratio)


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
    return lr * _warmup_factor(iteration, warmup_iters, warmup_ratio)


def multistep_lr(
    base_lr: float,
    iteration: int,
    milestones: Sequence[int],
    *,
    gamma: float = 0.1,
    warmup_iters: int = 0,
    warmup_ratio: float = 1.0 / 3,
) -> float:
    """The learning rate of 0-based ``iteration`` under step decay at ``milestones`` (see the module
    docstring): from iteration ``m`` on, each milestone ``m`` has multiplied it by ``gamma``."""
    decays = sum(1 for milestone in milestones if iteration >= milestone)
    return base_lr * gamma**decays * _warmup_factor(iteration, warmup_iters, warmup_ratio)


class _IterationSchedule(LRScheduler):
    """A per-iteration schedule given by :meth:`lr_at` for each group's base learning rate; ``step()`` once
    per iteration, after the optimiser. ``_settings`` name the attributes a resumed run keeps from its own
    config (see :meth:`load_state_dict`)."""

    _settings: tuple[str, ...] = ()

    def lr_at(self, base_lr: float, iteration: int) -> float:
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        return [self.lr_at(base, self.last_epoch) for base in self.base_lrs]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the position (the iteration) but keep this schedule's settings and base learning rates,
        so a resumed run follows its own config (e.g. a longer ``max_iters``, a lower ``optim.lr``).

        Call it after ``optimizer.load_state_dict``, which brings back the learning rates of the saved run:
        every group's ``lr`` is set again from this schedule at the restored iteration (the same value
        ``step()`` gives, so an unchanged config resumes bit for bit).
        """
        settings = {k: getattr(self, k) for k in (*self._settings, "base_lrs")}
        super().load_state_dict(state_dict)
        self.__dict__.update(settings)
        values = self.get_lr()
        for group, base, lr in zip(self.optimizer.param_groups, self.base_lrs, values, strict=True):
            group["initial_lr"], group["lr"] = base, lr
        self._last_lr = values


class PolyLR(_IterationSchedule):
    """:func:`poly_lr` for every parameter group."""

    _settings = ("max_iters", "power", "min_lr", "warmup_iters", "warmup_ratio")

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

    def lr_at(self, base_lr: float, iteration: int) -> float:
        return poly_lr(
            base_lr,
            iteration,
            self.max_iters,
            power=self.power,
            min_lr=self.min_lr,
            warmup_iters=self.warmup_iters,
            warmup_ratio=self.warmup_ratio,
        )


class MultiStepLR(_IterationSchedule):
    """:func:`multistep_lr` for every parameter group."""

    _settings = ("milestones", "gamma", "warmup_iters", "warmup_ratio")

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        milestones: Sequence[int],
        *,
        gamma: float = 0.1,
        warmup_iters: int = 0,
        warmup_ratio: float = 1.0 / 3,
    ) -> None:
        if list(milestones) != sorted(set(milestones)):
            raise ValueError(f"MultiStepLR: milestones must increase, got {list(milestones)}")
        self.milestones, self.gamma = tuple(milestones), gamma
        self.warmup_iters, self.warmup_ratio = warmup_iters, warmup_ratio
        super().__init__(optimizer)

    def lr_at(self, base_lr: float, iteration: int) -> float:
        return multistep_lr(
            base_lr,
            iteration,
            self.milestones,
            gamma=self.gamma,
            warmup_iters=self.warmup_iters,
            warmup_ratio=self.warmup_ratio,
        )


def build_scheduler(optimizer: torch.optim.Optimizer, optim: Any, max_iters: int) -> LRScheduler:
    """The schedule ``optim.schedule`` names (an :class:`~ccnet.config.OptimConfig`) over ``max_iters``:
    :class:`PolyLR`, or :class:`MultiStepLR` at ``optim.milestones`` (``"multistep"``) or every
    ``optim.step_size`` iterations (``"step"``)."""
    warmup = {"warmup_iters": optim.warmup_iters, "warmup_ratio": optim.warmup_ratio}
    if optim.schedule == "poly":
        return PolyLR(optimizer, max_iters, power=optim.power, min_lr=optim.min_lr, **warmup)
    if optim.schedule == "multistep":
        return MultiStepLR(optimizer, optim.milestones, gamma=optim.gamma, **warmup)
    if optim.schedule == "step":
        milestones = range(optim.step_size, max(max_iters, optim.step_size + 1), optim.step_size)
        return MultiStepLR(optimizer, list(milestones), gamma=optim.gamma, **warmup)
    raise ValueError(f"optim.schedule: unknown {optim.schedule!r}; allowed: 'poly', 'step', 'multistep'")


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
