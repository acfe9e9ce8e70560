"""Forward of the fast path: y = residual + gamma * (W (A v) + b) chunk by chunk, on pixel-major tensors.

The same maths as :mod:`ccnet.ops.reference`, eager only. Every line of a pixel-major tensor is a matrix with
unit channel stride, so batched matmuls read it in place (:mod:`ccnet.ops.lines`). The forward works one
chunk (one batch element, one block of rows; :mod:`ccnet.ops.chunks`) at a time, with the joint softmax
computed in place without concatenating the axes.

For the CCA block it also folds the value projection, the ``gamma`` scale and the residual into the same
pass, and computes q and k by one 1x1 projection of the input. Projecting after aggregation is the same
linear map as aggregating projected values, because every row of A sums to one. The only temporaries of
size (B, C, *S) are then the output and, for inputs that are not channels-last, their pixel-major copy.

For backward (``keep=True``) it keeps what backward would otherwise recompute: each chunk's attention
weights and, with the projection, its aggregate z = A v. Together with q and k this is faster than
recomputing them and keeping a pixel-major copy of the input instead, at a lower training peak, because
backward frees each chunk's share as soon as it is done with it (:mod:`ccnet.ops.fast_backward`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ccnet.ops import chunks
from ccnet.ops.chunks import Chunk
from ccnet.ops.layout import pixel_major
from ccnet.ops.projection import project
from ccnet.ops.reference import softmax_dtype


class ForwardResult(NamedTuple):
    """What :func:`fast_forward` returns; everything but ``out`` is for backward.

    out: (B, C_out, *S) in channels-last memory. q_pixels, k_pixels: pixel-major q and k (B, *S, C') in the
    softmax dtype (for the block, channel slices of one buffer). plan: the chunks, in the order forward
    walked them. kept: with ``keep``, for each chunk of the plan in turn, its attention weights
    (:func:`ccnet.ops.chunks.attention_weights`), then, with a value projection and ``keep_aggregate``, its
    aggregate z = A v; empty without ``keep``.
    """

    out: Tensor
    q_pixels: Tensor
    k_pixels: Tensor
    plan: list[Chunk]
    kept: list[Tensor]


def fast_forward(
    v: Tensor,
    *,
    q: Tensor | None = None,
    k: Tensor | None = None,
    qk_weight: Tensor | None = None,
    qk_bias: Tensor | None = None,
    value_weight: Tensor | None = None,
    value_bias: Tensor | None = None,
    gamma: Tensor | None = None,
    residual: Tensor | None = None,
    keep: bool = False,
    keep_aggregate: bool = True,
) -> ForwardResult:
    """y = residual + gamma * (W (A v) + b), each part optional; channels-first in and out.

    v: (B, C, *S). Either q and k (B, C', *S) are given, or ``qk_weight`` (2C', C) and ``qk_bias`` (2C',),
    from which they are projected from v (the CCA block). value_weight: (C_out, C), value_bias: (C_out,),
    gamma: scalar, residual: (B, C_out, *S) (the block passes v itself). ``keep``: keep each chunk's weights
    for backward, and with ``keep_aggregate`` also its aggregate z (projected forwards only).
    """
    v_pixels = pixel_major(v)
    if qk_weight is not None:
        qk = project(v_pixels, qk_weight, qk_bias).to(softmax_dtype(v_pixels.dtype))  # (B, *S, 2C')
        reduced = qk.shape[-1] // 2
        # views: the line views accept the channel stride
        q_pixels, k_pixels = qk[..., :reduced], qk[..., reduced:]
    else:
        dtype = softmax_dtype(q.dtype)
        q_pixels, k_pixels = pixel_major(q).to(dtype), pixel_major(k).to(dtype)
    out_channels = v.shape[1] if value_weight is None else value_weight.shape[0]
    plan = chunks.plan(v, out_channels)
    # With one chunk, its result becomes the output: no second buffer of the output's size.
    y = None if len(plan) == 1 else v_pixels.new_empty((*v_pixels.shape[:-1], out_channels))
    # The residual as a pixel-major view; when it is v, its contiguous copy reads faster than a strided view.
    residual_pixels = v_pixels if residual is v else (None if residual is None else residual.movedim(1, -1))
    if value_weight is not None and gamma is not None:
        # gamma (W z + b) as one projection: scaling the (C_out, C_in) weights saves a pass over the output
        value_weight = value_weight * gamma
        value_bias = None if value_bias is None else value_bias * gamma
        gamma = None
    kept = []
    for b, start, stop in plan:
        weights = chunks.attention_weights(q_pixels[b], k_pixels[b], start, stop)
        # ``out`` is the chunk's aggregate z, then rebound to its projection, which frees z unless kept
        out = chunks.aggregate(weights, v_pixels[b], start, stop)
        if keep:
            kept += [*weights, out] if value_weight is not None and keep_aggregate else weights
        if value_weight is not None:
            out = project(out, value_weight, value_bias)
        elif gamma is not None:
            out.mul_(gamma)
        if y is None:
            y = out.unsqueeze(0)
            if residual_pixels is not None:
                y.add_(residual_pixels)
        elif residual_pixels is None:
            y[b, start:stop] = out
        else:
            torch.add(out, residual_pixels[b, start:stop], out=y[b, start:stop])
    return ForwardResult(y.movedim(-1, 1), q_pixels, k_pixels, plan, kept)
