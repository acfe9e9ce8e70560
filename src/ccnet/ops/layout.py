"""Memory layouts of the fast path: pixel-major copies in, gradients back in each input's layout.

"Pixel-major" means (B, *S, C) contiguous: the channels of one position are adjacent, which is the memory of a
channels-last (B, C, *S) tensor. The fast path works on pixel-major tensors (names ending in ``_pixels``).
"""

from __future__ import annotations

import torch
from torch import Tensor

CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def pixel_major(t: Tensor) -> Tensor:
    """(B, C, *S) -> contiguous (B, *S, C); free for channels-last inputs."""
    if t.dim() in CHANNELS_LAST:
        # The memory-format conversion has a blocked transpose kernel, faster than the generic strided copy
        # that ``movedim(...).contiguous()`` makes.
        t = t.contiguous(memory_format=CHANNELS_LAST[t.dim()])
    return t.movedim(1, -1).contiguous()


def dense_memory_format(t: Tensor) -> torch.memory_format | None:
    """The memory format in which ``t`` is dense: contiguous, channels-last, or None for other strides."""
    for memory_format in (torch.contiguous_format, CHANNELS_LAST.get(t.dim())):
        if memory_format is not None and t.is_contiguous(memory_format=memory_format):
            return memory_format
    return None


def in_memory_format(grad: Tensor | None, memory_format: torch.memory_format | None) -> Tensor | None:
    """A gradient in its input's memory format (None: as computed).

    The fast path computes gradients channels-last (q and k as channel slices of one buffer); handing them
    back in the input's format keeps the layers upstream on their own layout, and autograd would make the
    same copy when accumulating into a leaf.
    """
    return grad if grad is None or memory_format is None else grad.contiguous(memory_format=memory_format)
