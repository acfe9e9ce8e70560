"""Criss-cross attention in plain differentiable tensor ops: the reference of the maths. Read this first.

Shapes: q, k (B, C', *S) and v (B, C, *S), with S = (H, W) for images (N = 2 grid axes) or (T, H, W) for
video (N = 3); C' = C // reduction in the CCA block.

Criss-cross set. The criss-cross set of a position u is every position that differs from u in at most one
grid coordinate: its row and column in 2-D (H + W - 1 positions), and also its time line in 3-D
(T + H + W - 2 positions). It is the union of the N lines through u, one per axis; u lies on all of them and
is counted once, in the line of the last axis (its diagonal is masked with -inf in the others).

Attention. With energies e(u, i) = <q_u, k_i>, the weights of u are one joint softmax over its whole
criss-cross set, A(u, i) = exp e(u, i) / sum_j exp e(u, j) for i, j in the set (not one softmax per line),
and the output is out_u = sum_i A(u, i) v_i, of shape (B, C, *S). Energies and the softmax run in float32
(float64 for float64 inputs), also for half-precision inputs; the weights are cast back to v's dtype.

Computed per axis d: with the lines of axis d as the second-to-last dim, q and k are (B, *others, L, C') for
L = S[d], the energies of axis d are (B, *others, L, L), and the softmax statistics (row maximum, sum of
exponentials) are combined over the axes per position (B, *S).

CCA block. The module computes q = W_q x + b_q and k = W_k x + b_k (1x1 convolutions, W_q and W_k stacked
as one (2C', C) weight W_qk) and

    y = x + gamma (W_v (A x) + b_v) = x + gamma A (W_v x + b_v),

the equality because every row of A sums to 1. The paper projects the values first (right-hand side);
projecting the aggregate (left-hand side) is the same linear map and is what both paths compute. RCCA
applies one block R times with shared weights.

This path (``path="portable"``) is used when tracing, scripting, compiling or exporting (TorchScript,
``torch.compile``, ONNX), where the fast path's custom autograd Function and shape-dependent Python loops
cannot go, and for small inputs; :mod:`ccnet.ops.dispatch` chooses. The fast path (:mod:`ccnet.ops.chunks`,
:mod:`ccnet.ops.fast_forward`, :mod:`ccnet.ops.fast_backward`, :mod:`ccnet.ops.autograd`) computes the same
maths eagerly on CPU, one chunk of rows at a time, with a hand-written backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ccnet.ops.recording import record


def softmax_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of energies and softmax: float32 for half types (and float32), float64 stays float64."""
    return torch.promote_types(dtype, torch.float32)


def criss_cross_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    num_axes: int,
    *,
    value_weight: Tensor | None = None,
    value_bias: Tensor | None = None,
    gamma: Tensor | None = None,
    residual: Tensor | None = None,
) -> Tensor:
    """out = residual + gamma * (W (A v) + b), each part optional; channels-first in and out.

    q, k: (B, C', *S); v: (B, C, *S); value_weight: (C_out, C), value_bias: (C_out,), gamma: scalar;
    residual: (B, C_out, *S). Returns (B, C_out, *S).

    Dims are spelled as non-negative indices: some ONNX exporters emit invalid Transpose perms for negative
    ones.
    """
    last = num_axes + 1  # index of the channel dim in (B, *S, C), and of the last dim of a (B, *S, L) tensor
    qs = q.movedim(1, last).to(softmax_dtype(q.dtype))  # (B, *S, C')
    ks = k.movedim(1, last).to(qs.dtype)
    vs = v.movedim(1, last)  # (B, *S, C)
    energies = []
    row_max = None
    for d in range(num_axes):
        axis = 1 + d
        q_lines = qs.movedim(axis, last - 1)  # (B, *others, L, C')
        k_lines = ks.movedim(axis, last - 1)
        energy = q_lines @ k_lines.transpose(last - 1, last)  # (B, *others, L, L)
        if d != num_axes - 1:  # u itself is counted once, in the last axis
            index = torch.arange(energy.shape[last], device=energy.device)
            energy = energy.masked_fill(index[:, None] == index[None, :], float("-inf"))
        energies.append(energy)
        line_max = energy.detach().amax(last).movedim(last - 1, axis)  # (B, *S)
        row_max = line_max if row_max is None else torch.maximum(row_max, line_max)
    assert row_max is not None

    # per-position (B, *S) tensors seen along the lines of axis d: (B, *others, L, 1)
    def along(t: Tensor, d: int) -> Tensor:
        return t.movedim(1 + d, last - 1).unsqueeze(last)

    # one softmax over the whole criss-cross set: the maximum and the sum run over every axis
    exps = [torch.exp(e - along(row_max, d)) for d, e in enumerate(energies)]
    total = sum(p.sum(last).movedim(last - 1, 1 + d) for d, p in enumerate(exps))
    weights = [p / along(total, d) for d, p in enumerate(exps)]  # (B, *others, L, L) per axis
    record(weights)  # kept only inside ccnet.ops.recording.record_attention
    out = 0
    for d, weight in enumerate(weights):
        out = out + (weight.to(v.dtype) @ vs.movedim(1 + d, last - 1)).movedim(last - 1, 1 + d)  # (B, *S, C)
    if value_weight is not None:
        out = F.linear(out, value_weight, value_bias)
    if gamma is not None:
        out = gamma * out
    if residual is not None:
        out = residual.movedim(1, last) + out
    return out.movedim(last, 1)


def cca_block_reference(
    x: Tensor,
    num_axes: int,
    qk_weight: Tensor,
    qk_bias: Tensor,
    value_weight: Tensor,
    value_bias: Tensor,
    gamma: Tensor,
) -> Tensor:
    """One CCA block: y = x + gamma * (W_v (A x) + b_v), with q/k = W_qk x + b_qk.

    x: (B, C, *S); qk_weight: (2C', C) (query rows, then key rows); qk_bias: (2C',); value_weight: (C, C);
    value_bias: (C,); gamma: scalar. Returns (B, C, *S).
    """
    conv = F.conv2d if num_axes == 2 else F.conv3d
    qk = conv(x, qk_weight.reshape(*qk_weight.shape, *[1] * num_axes), qk_bias)  # (B, 2C', *S)
    reduced = qk.shape[1] // 2
    q, k = qk[:, :reduced], qk[:, reduced:]  # slices, not chunk: ONNX opset 17 has no Split(num_outputs)
    return criss_cross_reference(
        q, k, x, num_axes, value_weight=value_weight, value_bias=value_bias, gamma=gamma, residual=x
    )
