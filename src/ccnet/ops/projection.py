"""The 1x1 projections of the fast path (W_qk x + b_qk, W_v z + b_v) on pixel-major tensors, and their weight
gradient.

On CPU in float32 the projections call oneDNN's convolution directly (:func:`use_onednn`). torch's FLOP
counter does not know that op: :func:`ccnet.measure.flop_counter` registers its formula.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def use_onednn(t: Tensor) -> bool:
    """Whether the 1x1 products of ``t`` run on oneDNN's convolution directly (CPU float32).

    ``F.conv2d`` picks oneDNN for these shapes only with more than one thread: single-threaded, it falls back
    to a much slower im2col kernel. oneDNN has no float64 kernels, and other devices have their own
    convolution libraries, so everything else keeps ``F.conv2d``.
    """
    return t.device.type == "cpu" and t.dtype == torch.float32 and torch.backends.mkldnn.is_available()


def project(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """A 1x1 convolution of pixel-major x (..., C_in) with weight (C_out, C_in): (..., C_out).

    Runs as a channels-last convolution, which on CPU uses oneDNN, faster than a plain matmul.
    """
    channels = x.shape[-1]
    x4 = x.reshape(1, -1, 1, channels).permute(0, 3, 1, 2)  # (1, C_in, N, 1), channels-last memory
    weight4 = weight.reshape(weight.shape[0], channels, 1, 1)
    if use_onednn(x4):
        # contiguous: this op reads a strided bias as if it were dense (wrong sums, no error; torch 2.14)
        bias = None if bias is None else bias.contiguous()
        y4 = torch.mkldnn_convolution(x4, weight4.contiguous(), bias, [0, 0], [1, 1], [1, 1], 1)
    else:
        y4 = F.conv2d(x4, weight4, bias)  # (1, C_out, N, 1)
    return y4.permute(0, 2, 3, 1).reshape(*x.shape[:-1], weight.shape[0])


def add_projection_weight_grad(out: Tensor, grad: Tensor, x: Tensor) -> None:
    """out += sum over positions of grad x^T; pixel-major grad (..., C_out), x (..., C_in); out (C_out, C_in).

    The weight gradient of :func:`project`, as one matmul with a transposed operand: oneDNN's convolution
    backward computes the same but is slower with two threads and no faster with one.
    """
    g2, x2 = grad.reshape(-1, grad.shape[-1]), x.reshape(-1, x.shape[-1])
    if out.dtype == g2.dtype == x2.dtype:
        out.addmm_(g2.t(), x2)
    else:
        out += (g2.t() @ x2).to(out.dtype)
