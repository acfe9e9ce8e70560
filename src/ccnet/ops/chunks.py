"""The fast path's unit of work, a chunk, and the forward maths of one chunk (used by forward and backward).

A chunk is one batch element and a block of rows [start, stop) of grid axis 0. Per chunk, the fast path
computes the joint-softmax weights of the chunk's queries (:func:`attention_weights`) and their aggregate
z = A v (:func:`aggregate`), on pixel-major tensors of one batch element (S0, *rest, C), where
rest = S[1:]. See :mod:`ccnet.ops.lines` for the two kinds of lines (axis 0, leaving the chunk; the other
axes, inside it) and the layout of their weights, and :mod:`ccnet.ops.reference` for the maths.

Backward walks the same plan as forward and recomputes these when it has to: it calls them through this
module (``chunks.attention_weights``), so there is one definition to patch in tests.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ccnet.ops.lines import (
    add_bmm,
    axis0_lines,
    in_chunk_energies,
    in_chunk_products_into,
    weight_rows,
)

# Rows of axis 0 per chunk are chosen so that a chunk holds at most this many elements of the widest
# per-position tensor (32 MB in float32), which bounds the temporaries of large inputs. Large chunks pay: in
# backward the axis-0 products contract over the chunk's rows, and matmuls over more rows run at a higher
# rate. With this budget the CCNet head's features (512 channels, 97 x 97) are one chunk, which is faster
# than two at the same training peak.
CHUNK_ELEMENTS = 1 << 23


class Chunk(NamedTuple):
    """Batch element ``batch``, rows [start, stop) of grid axis 0."""

    batch: int
    start: int
    stop: int


def plan(v: Tensor, out_channels: int) -> list[Chunk]:
    """The chunks of channels-first v (B, C, *S) for an output of ``out_channels`` channels: blocks of rows
    of axis 0 covering every batch element, each holding at most ``CHUNK_ELEMENTS`` elements of the widest
    per-position tensor (at least one row). Forward and backward walk the same plan.

    Blocks have equal sizes (within one row): a small remainder block would run inefficient small matmuls.
    """
    batch, rows = v.shape[0], v.shape[2]
    row_elements = math.prod(v.shape[3:]) * max(v.shape[1], out_channels)
    count = math.ceil(rows / max(1, CHUNK_ELEMENTS // max(1, row_elements)))
    step = math.ceil(rows / count)
    return [Chunk(b, start, min(start + step, rows)) for b in range(batch) for start in range(0, rows, step)]


def attention_weights(q: Tensor, k: Tensor, start: int, stop: int) -> list[Tensor]:
    """Joint softmax weights of the queries in rows [start, stop), in the dtype of q/k.

    q, k: one batch element, pixel-major (S0, *rest, C'). Returns [axis-0 weights (R, n, S0), then
    (P, Q, L, L) for each in-chunk axis 1..N-1]; together, every row sums to 1 over the criss-cross set.
    """
    num_axes = q.dim() - 1
    q_chunk, k_chunk = q[start:stop], k[start:stop]
    axis0_energy = torch.bmm(axis0_lines(q, start, stop), axis0_lines(k).transpose(1, 2))  # (R, n, S0)
    # u itself is counted once, in the last axis; the diagonal of axis 0 is offset by the chunk start.
    axis0_energy.diagonal(offset=start, dim1=1, dim2=2).fill_(float("-inf"))
    energies = [axis0_energy]
    for d in range(1, num_axes):
        energy = in_chunk_energies(q_chunk, k_chunk, d)
        if d != num_axes - 1:
            energy.diagonal(dim1=-2, dim2=-1).fill_(float("-inf"))
        energies.append(energy)
    # The softmax in place, without concatenating the axes: maximum and sum are combined per position.
    row_max = q_chunk.new_empty(q_chunk.shape[:-1])  # (n, *rest)
    weight_rows(row_max, 0).copy_(axis0_energy.amax(-1))
    for d in range(1, num_axes):
        view = weight_rows(row_max, d)
        torch.maximum(view, energies[d].amax(-1), out=view)
    total = torch.zeros_like(row_max)
    for d, energy in enumerate(energies):
        energy.sub_(weight_rows(row_max, d).unsqueeze(-1)).exp_()
        weight_rows(total, d).add_(energy.sum(-1))
    total.reciprocal_()
    for d, energy in enumerate(energies):
        energy.mul_(weight_rows(total, d).unsqueeze(-1))
    return energies


def aggregate(weights: list[Tensor], v: Tensor, start: int, stop: int) -> Tensor:
    """z_u = sum over the criss-cross set of u of A(u, i) v_i for the queries u in rows [start, stop).

    weights: from :func:`attention_weights`; v: one batch element, pixel-major (S0, *rest, C).
    Returns (n, *rest, C) in v's dtype.
    """
    num_axes = v.dim() - 1
    weights = [w.to(v.dtype) for w in weights]
    v_chunk = v[start:stop]
    out = torch.empty_like(v_chunk)
    last = num_axes - 1
    in_chunk_products_into(out, weights[last], v_chunk, last, transpose=False, accumulate=False)
    for d in range(1, last):
        in_chunk_products_into(out, weights[d], v_chunk, d, transpose=False, accumulate=True)
    add_bmm(axis0_lines(out), weights[0], axis0_lines(v))
    return out
