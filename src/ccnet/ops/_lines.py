"""Batched products along the lines of an N-d grid, on channels-last ("pixel-major") tensors.

A pixel-major tensor has shape (B, *S, X) and is contiguous; S holds the N grid sizes (H, W) or (T, H, W).
The lines of axis ``d`` are the 1-D slices along S[d]. Seen as (P, L, Q, X) with P = B * prod(S[:d]),
L = S[d] and Q = prod(S[d + 1:]), every line is an (L, X) matrix whose channel stride is 1, so batched matmul
reads it in place: no permute copies, whichever axis the line runs along. Attention weights of axis ``d``
are stored as contiguous (P, Q, L, L) tensors: entry [p, q, i, j] is the weight from position i to position j
of line (p, q).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def line_batches(t: Tensor, d: int, num_axes: int) -> list[Tensor]:
    """Views of the lines of axis ``d`` of pixel-major ``t`` (B, *S, X) as batches of (L, X) matrices.

    The last axis gives one contiguous (P, L, X) batch; any other axis gives P strided (Q, L, X) batches.
    """
    p, length, q = _pql(t, d, num_axes)
    lines = t.view(p, length, q, t.shape[-1])
    if q == 1:
        return [lines.squeeze(2)]
    return [lines[i].transpose(0, 1) for i in range(p)]


def weight_batches(a: Tensor) -> list[Tensor]:
    """Views of (P, Q, L, L) weights that pair with :func:`line_batches` of the same axis."""
    p, q, length, _ = a.shape
    if q == 1:
        return [a.view(p, length, length)]
    return list(a.unbind(0))


def grid_view(t: Tensor, d: int, num_axes: int) -> Tensor:
    """A per-position tensor (B, *S) seen as (P, Q, L), aligned with the rows of axis-``d`` weights."""
    p, length, q = _pql(t, d, num_axes)
    return t.view(p, length, q).transpose(1, 2)


def _pql(t: Tensor, d: int, num_axes: int) -> tuple[int, int, int]:
    spatial = t.shape[1 : 1 + num_axes]
    return t.shape[0] * math.prod(spatial[:d]), spatial[d], math.prod(spatial[d + 1 :])


def line_energies(q: Tensor, k: Tensor, d: int, num_axes: int) -> Tensor:
    """Energies <q_i, k_j> between all positions i, j of each line of axis ``d``: (P, Q, L, L)."""
    p, length, qn = _pql(q, d, num_axes)
    energy = torch.empty((p, qn, length, length), dtype=q.dtype, device=q.device)
    for qb, kb, eb in zip(line_batches(q, d, num_axes), line_batches(k, d, num_axes), weight_batches(energy)):
        torch.bmm(qb, kb.transpose(1, 2), out=eb)
    return energy


def aggregate_into(out: Tensor, a: Tensor, v: Tensor, d: int, num_axes: int, *, accumulate: bool) -> None:
    """out[i] (+)= sum_j a[i, j] v[j] along every line of axis ``d``; ``out`` and ``v`` pixel-major.

    With ``accumulate=False`` the axis must be the last one (its batches are contiguous and written in place).
    """
    for ab, vb, ob in zip(weight_batches(a), line_batches(v, d, num_axes), line_batches(out, d, num_axes)):
        if accumulate:
            ob.add_(torch.bmm(ab, vb))
        else:
            torch.bmm(ab, vb, out=ob)


def aggregate_transposed_into(
    out: Tensor, a: Tensor, g: Tensor, d: int, num_axes: int, *, accumulate: bool
) -> None:
    """out[j] (+)= sum_i a[i, j] g[i] along every line of axis ``d`` (adjoint of :func:`aggregate_into`)."""
    for ab, gb, ob in zip(weight_batches(a), line_batches(g, d, num_axes), line_batches(out, d, num_axes)):
        if accumulate:
            ob.add_(torch.bmm(ab.transpose(1, 2), gb))
        else:
            torch.bmm(ab.transpose(1, 2), gb, out=ob)
