"""Multi-process data parallel plumbing: process group from ``torchrun`` variables, devices, seeds, SyncBN.

``torchrun --nproc-per-node=N -m ccnet train ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and the
rendezvous address); :func:`init_distributed` reads them and joins the group with the ``nccl`` backend on
CUDA or ``gloo`` on CPU. Without them it returns a single-process context and creates no group. Only rank 0
writes files and logs progress; callers check ``ctx.is_main`` explicitly (``print`` is never patched).

PyTorch's ``nn.SyncBatchNorm`` refuses CPU tensors, so :class:`CPUSyncBatchNorm` synchronises batch
statistics through autograd-aware all-reduces on any backend; :func:`convert_sync_batchnorm` picks the right
one for the device.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from ccnet.config import ConfigError

__all__ = [
    "CPUSyncBatchNorm",
    "DistContext",
    "convert_sync_batchnorm",
    "init_distributed",
    "resolve_device",
    "seed_everything",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: ``rank`` of ``world_size`` processes, its ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"``: ``cuda:<local_rank>`` if CUDA is available, else CPU; ``"cuda"``: the local rank's GPU.

    Raises:
        ConfigError: naming ``train.device``, for a device this machine does not have or an unknown name.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ConfigError(
            f"train.device: {device!r} is not a device name ({error}); use 'cpu' or 'auto'"
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device: {device!r} but CUDA is not available here; use 'cpu' or 'auto'")
        index = local_rank if resolved.index is None else resolved.index
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"train.device: {device!r} needs GPU {index} but this machine has {torch.cuda.device_count()}"
            )
        return torch.device("cuda", index)
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"train.device: {device!r} but MPS is not available here; use 'cpu' or 'auto'")
    return resolved


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter (or buffer); CPU for a module without tensors."""
    tensor = next(itertools.chain(module.parameters(), module.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


def init_distributed(device: str = "auto") -> DistContext:
    """A :class:`DistContext` from the ``torchrun`` environment; joins the process group when WORLD_SIZE > 1.

    The backend is ``nccl`` for CUDA devices and ``gloo`` otherwise. Calling it again in a process that
    already joined a group reuses that group.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    resolved = resolve_device(device, local_rank)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
    return DistContext(rank, world_size, local_rank, local_world_size, resolved)


def broadcast_object(value: Any, ctx: DistContext) -> Any:
    """Rank 0's ``value`` on every rank (``value`` itself without a process group)."""
    if not ctx.distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose backward is again a sum over processes (each rank's loss depends on the
    summed statistics of every rank)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        total = x.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        total = grad.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the batch across all processes.

    Works on any device and backend (gloo on CPU included): per-channel sums are combined with autograd-aware
    all-reduces, so gradients flow through the global mean and variance exactly as in ``nn.SyncBatchNorm``.
    Without a process group of more than one process it is a plain BatchNorm2d. Two passes (mean, then
    squared deviations) keep the variance accurate.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (
            self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        ):
            return super().forward(x)
        self._check_input_dim(x)
        C = x.shape[1]
        local_count = x.new_full((1,), x.numel() // C)
        totals = _AllReduceSum.apply(torch.cat([x.sum((0, 2, 3)), local_count]))  # (C + 1,)
        count = totals[C]
        mean = totals[:C] / count  # (C,)
        centred = x - mean.view(1, C, 1, 1)
        var = _AllReduceSum.apply(centred.square().sum((0, 2, 3))) / count  # biased, as used to normalise
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (
                    self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                )
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(unbiased.detach(), momentum)
        y = centred * torch.rsqrt(var + self.eps).view(1, C, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, C, 1, 1) + self.bias.view(1, C, 1, 1)
        return y


def _to_cpu_sync(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, CPUSyncBatchNorm):
        reference = next(iter(module.state_dict().values()), torch.empty(0))  # weight or running mean
        sync = CPUSyncBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            device=reference.device,
            dtype=reference.dtype,
        )
        sync.load_state_dict(module.state_dict())
        sync.train(module.training)
        return sync
    for name, child in module.named_children():
        module.add_module(name, _to_cpu_sync(child))
    return module


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace every batch norm of ``model`` by a synchronised one: ``nn.SyncBatchNorm`` on CUDA,
    :class:`CPUSyncBatchNorm` elsewhere. Parameters and running statistics are kept."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _to_cpu_sync(model)
