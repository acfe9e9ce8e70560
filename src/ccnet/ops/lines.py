"""Views and batched products along the lines of a grid, on pixel-major (channels-last) tensors.

A pixel-major tensor has shape (*S, X) or (1, *S, X) and is contiguous in its last dims; S holds the N grid
sizes (H, W) or (T, H, W). The lines of axis ``d`` are the 1-D slices along S[d]. Seen as (P, L, Q, X) with
P = prod(S[:d]), L = S[d] and Q = prod(S[d + 1:]), every line is an (L, X) matrix whose channel stride is 1,
so batched matmuls read it in place, whichever axis the line runs along: no permute copies.

The fast path processes one batch element and one block of rows of axis 0 at a time (a "chunk", shape
(n, *S[1:], X) for n rows), so that nothing of full (B, *S, C) size is allocated besides the outputs. The two
kinds of lines are named after where they lie:

* ``axis0_*``: lines of axis 0 leave the chunk. The chunk's queries meet the keys/values of the whole line.
  Their weights are (R, n, S0): R = prod(S[1:]) lines, n chunk rows, S0 line length.
* ``in_chunk_*``: lines of every other axis lie inside the chunk. Their weights are (P, Q, L, L) for the chunk
  grid (n, *S[1:]); entry [p, q, i, j] is the weight from position i to position j of line (p, q).

A per-position tensor of the chunk (n, *S[1:]), such as a softmax row maximum, is read and written through
``*_weight_rows`` views, whose shape is the leading shape of that axis's weights.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def in_chunk_lines(t: Tensor, d: int) -> list[Tensor]:
    """Lines of axis ``d`` >= 1 of a pixel-major chunk ``t`` (n, *rest, X) as batches of (L, X) matrices.

    The last axis gives one contiguous (P, L, X) batch; a middle axis gives P strided (Q, L, X) batches.
    """
    p, length, q = math.prod(t.shape[:d]), t.shape[d], math.prod(t.shape[d + 1 : -1])
    lines = t.view(p, length, q, t.shape[-1])
    if q == 1:
        return [lines.squeeze(2)]
    return [lines[i].transpose(0, 1) for i in range(p)]


def in_chunk_weight_batches(a: Tensor) -> list[Tensor]:
    """Views of (P, Q, L, L) weights that pair with :func:`in_chunk_lines` of the same axis."""
    p, q, length, _ = a.shape
    if q == 1:
        return [a.view(p, length, length)]
    return list(a.unbind(0))


def in_chunk_weight_rows(t: Tensor, d: int) -> Tensor:
    """A per-position chunk tensor (n, *rest) seen as (P, Q, L), aligned with the axis-``d`` weight rows."""
    p, length, q = math.prod(t.shape[:d]), t.shape[d], math.prod(t.shape[d + 1 :])
    return t.view(p, length, q).transpose(1, 2)


def axis0_lines(t: Tensor, start: int = 0, stop: int | None = None) -> Tensor:
    """Rows [start, stop) of axis 0 of a pixel-major (S0, *rest, X) tensor as an (R, n, X) batch view."""
    rows = t[start:stop]
    return rows.view(rows.shape[0], -1, rows.shape[-1]).transpose(0, 1)


def axis0_weight_rows(t: Tensor) -> Tensor:
    """A per-position chunk tensor (n, *rest) seen as (R, n), aligned with the rows of axis-0 weights."""
    return t.view(t.shape[0], -1).t()


def weight_rows(t: Tensor, d: int) -> Tensor:
    """A per-position chunk tensor (n, *rest) aligned with the rows of the axis-``d`` weights."""
    return axis0_weight_rows(t) if d == 0 else in_chunk_weight_rows(t, d)


# Budget (elements) of the temporary through which a product is added into a strided output.
ACCUMULATE_ELEMENTS = 1 << 20


def add_bmm(out: Tensor, a: Tensor, b: Tensor) -> None:
    """out += a @ b for (N, ., .) batches, where ``out`` may be a strided view.

    ``baddbmm_`` on a non-contiguous output falls back to one small matmul per batch entry, which is much
    slower, so the product goes through a contiguous temporary, in blocks of the batch that keep the
    temporary within ``ACCUMULATE_ELEMENTS``. A contiguous ``out`` accumulates in place, which is faster
    than the temporary and needs no memory.
    """
    if out.is_contiguous():
        out.baddbmm_(a, b)
        return
    step = max(1, ACCUMULATE_ELEMENTS // (out.shape[1] * out.shape[2]))
    for start in range(0, out.shape[0], step):
        block = slice(start, start + step)
        out[block].add_(torch.bmm(a[block], b[block]))


def in_chunk_energies(q: Tensor, k: Tensor, d: int) -> Tensor:
    """<q_i, k_j> for all i, j on each axis-``d`` line of chunks q, k (n, *rest, C'): (P, Q, L, L)."""
    p, length, qn = math.prod(q.shape[:d]), q.shape[d], math.prod(q.shape[d + 1 : -1])
    energy = q.new_empty((p, qn, length, length))
    for qb, kb, eb in zip(in_chunk_lines(q, d), in_chunk_lines(k, d), in_chunk_weight_batches(energy)):
        torch.bmm(qb, kb.transpose(1, 2), out=eb)
    return energy


def in_chunk_products_into(
    out: Tensor, a: Tensor, x: Tensor, d: int, *, transpose: bool, accumulate: bool
) -> None:
    """out[i] (+)= sum_j a[i, j] x[j] (or sum_j a[j, i] x[j]) along every axis-``d`` line of the chunks.

    out, x: (n, *rest, X) chunks; a: (P, Q, L, L) weights.
    """
    for ab, xb, ob in zip(in_chunk_weight_batches(a), in_chunk_lines(x, d), in_chunk_lines(out, d)):
        if transpose:
            ab = ab.transpose(1, 2)
        if accumulate:
            add_bmm(ob, ab, xb)
        else:
            torch.bmm(ab, xb, out=ob)
