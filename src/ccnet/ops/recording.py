"""Recording the attention weights that the op computes: what a pixel looks at, per loop of RCCA.

Inside ``with record_attention() as records:`` every criss-cross call (2-D or 3-D, module or functional)
runs the reference path (:mod:`ccnet.ops.reference`) and appends its softmax weights to ``records``, one
:class:`AttentionWeights` per call, in call order: for an RCCA module applied R times, R records (loop 1
first). The weights are the ones the forward pass uses, not a second implementation of the attention.
Outside the block nothing changes (the fast path runs as before).

A record keeps the weights per axis in the op's own compact form (per line, L x L), so it costs about
``N x (sum of the grid sizes)`` floats for N positions, not N x N; :meth:`AttentionWeights.weights_of` turns
one position's weights into a grid map, and :func:`two_step_reach` composes two loops.

>>> import torch
>>> from ccnet.ops import RecurrentCrissCrossAttention
>>> rcca = RecurrentCrissCrossAttention(8, recurrence=2, reduction=2).eval()
>>> with record_attention() as records:
...     _ = rcca(torch.randn(1, 8, 5, 6))
>>> len(records), records[0].weights_of((2, 3)).shape
(2, torch.Size([5, 6]))
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["AttentionWeights", "record_attention", "recording_attention", "two_step_reach"]


@dataclass(frozen=True)
class AttentionWeights:
    """The softmax weights of one criss-cross call over a grid S (H, W) or (T, H, W).

    ``lines[d]``: the weights along axis d, (B, *others_d, L_d, L_d) float32 on the CPU, where others_d is
    S without axis d and L_d = S[d]: ``lines[d][b, *o, i, j]`` is the weight that the position at index i of
    its axis-d line gives to index j of the same line. A position lies on every one of its lines but is
    counted once, in the last axis (zero in the others), so each position's weights sum to 1.
    """

    lines: tuple[Tensor, ...]

    @property
    def grid(self) -> tuple[int, ...]:
        """S, the grid size."""
        last = self.lines[-1]  # (B, *S[:-1], L, L)
        return (*last.shape[1:-2], last.shape[-1])

    @property
    def batch_size(self) -> int:
        return self.lines[0].shape[0]

    def weights_of(self, position: Sequence[int], batch: int = 0) -> Tensor:
        """(*S) map of the weights that ``position`` (one index per grid axis) gives to each position:
        nonzero only on its criss-cross set, summing to 1."""
        grid = self.grid
        position = tuple(int(p) for p in position)
        if len(position) != len(grid) or not all(0 <= p < s for p, s in zip(position, grid, strict=True)):
            raise ValueError(f"position {position} is not a position of the grid {grid}")
        out = torch.zeros(grid, dtype=self.lines[0].dtype)
        for d, weights in enumerate(self.lines):
            others = position[:d] + position[d + 1 :]
            line = weights[(batch, *others, position[d])]  # (L_d,)
            index = (*position[:d], slice(None), *position[d + 1 :])
            out[index] += line
        return out

    def matrix(self, batch: int = 0) -> Tensor:
        """The dense (N, N) attention matrix, N = prod(S) flattened row-major: A[u, j] = the weight of j in
        u's output. For small grids (tests, figures): N x N floats."""
        grid = self.grid
        positions = torch.cartesian_prod(*map(torch.arange, grid))  # (N, len(S)), row-major
        return torch.stack([self.weights_of(u, batch).flatten() for u in positions])


def two_step_reach(
    first: AttentionWeights, second: AttentionWeights, position: Sequence[int], batch: int = 0
) -> Tensor:
    """(*S) map: how much each position feeds ``position`` through two attention loops, (A2 A1)[u].

    The second loop's output at u is a weighted sum of the first loop's outputs at u's criss-cross set,
    each a weighted sum over its own criss-cross set; the product of the weights along these two-hop paths,
    summed, reaches (for a 2-D grid) every position of the image: the paper's full-image dependencies.
    Sums to 1. Bias and the residual path are not attention and are not counted.
    """
    if first.grid != second.grid:
        raise ValueError(f"two_step_reach: loops over different grids {first.grid} and {second.grid}")
    via = second.weights_of(position, batch)  # (*S), nonzero on u's criss-cross set only
    out = torch.zeros(first.grid, dtype=via.dtype)
    for middle in via.nonzero().tolist():
        out += via[tuple(middle)] * first.weights_of(middle, batch)
    return out


_RECORDS: contextvars.ContextVar[list[AttentionWeights] | None] = contextvars.ContextVar(
    "ccnet_attention_records", default=None
)


def recording_attention() -> bool:
    """True inside :func:`record_attention` (in this thread / context): the op then takes the reference
    path and records its weights."""
    return _RECORDS.get() is not None


def record(lines: Sequence[Tensor]) -> None:
    """Called by the reference path with its per-axis softmax weights; keeps a detached CPU float32 copy
    when recording, else does nothing."""
    if torch.compiler.is_compiling():  # a compiled graph records nothing (and must not read the ContextVar)
        return
    records = _RECORDS.get()
    if records is not None:
        records.append(AttentionWeights(tuple(w.detach().float().cpu() for w in lines)))


@contextlib.contextmanager
def record_attention() -> Iterator[list[AttentionWeights]]:
    """Record the weights of every criss-cross call made inside the block (see the module docstring).

    Context-local (a :class:`contextvars.ContextVar`): calls made by other threads are not recorded, so a
    server can record one request while serving others.
    """
    records: list[AttentionWeights] = []
    token = _RECORDS.set(records)
    try:
        yield records
    finally:
        _RECORDS.reset(token)
