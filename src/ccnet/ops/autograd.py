"""The autograd Functions of the fast path: the functional op and the whole CCA block.

Both run :func:`~ccnet.ops.fast_forward.fast_forward` with ``keep=True``, save q and k (pixel-major), their
inputs as given and what the forward kept, and hand the gradients back in each input's memory format.
"""

from __future__ import annotations

import torch

from ccnet.ops.fast_backward import fast_backward
from ccnet.ops.fast_forward import fast_forward
from ccnet.ops.layout import dense_memory_format, in_memory_format


class CrissCrossFunction(torch.autograd.Function):
    """out = A v for q, k (B, C', *S), v (B, C, *S).

    Saves q and k (pixel-major), v as given and each chunk's attention weights.
    """

    @staticmethod
    def forward(ctx, q, k, v):  # type: ignore[override]
        y, q_pixels, k_pixels, ctx.plan, kept = fast_forward(v, q=q, k=k, keep=True)
        ctx.q_dtype, ctx.k_dtype = q.dtype, k.dtype
        ctx.input_formats = (dense_memory_format(q), dense_memory_format(k), dense_memory_format(v))
        ctx.save_for_backward(q_pixels, k_pixels, v, *kept)
        return y

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        q_pixels, k_pixels, v, *kept = ctx.saved_tensors
        need_q, need_k, need_v = ctx.needs_input_grad
        grads = fast_backward(
            grad_out,
            q_pixels,
            k_pixels,
            v,
            ctx.plan,
            kept,
            need_qk=need_q or need_k,
            need_v=need_v,
            v_is_residual=False,
        )
        grad_q, grad_k, grad_v = grads.q, grads.k, grads.v
        del grads  # the softmax-dtype dq/dk buffer goes as soon as both are converted
        grad_q = grad_q.to(ctx.q_dtype) if need_q else None
        grad_k = grad_k.to(ctx.k_dtype) if need_k else None
        grads = (grad_q, grad_k, grad_v)
        return tuple(map(in_memory_format, grads, ctx.input_formats))


class CCABlockFunction(torch.autograd.Function):
    """y = x + gamma * (W_v (A x) + b_v) with q/k = W_qk x + b_qk, for x (B, C, *S).

    Saves x as given, q and k (pixel-major), the parameters, and per chunk the attention weights and, with
    ``keep_aggregate``, the aggregate z = A x (one (B, C, *S) tensor in all), which backward would otherwise
    recompute at a noticeable share of its time; the gradient of x (residual + attention + projection) is
    accumulated in one buffer.
    """

    @staticmethod
    def forward(ctx, x, qk_weight, qk_bias, value_weight, value_bias, gamma, keep_aggregate):  # type: ignore[override]
        y, q_pixels, k_pixels, ctx.plan, kept = fast_forward(
            x,
            qk_weight=qk_weight,
            qk_bias=qk_bias,
            value_weight=value_weight,
            value_bias=value_bias,
            gamma=gamma,
            residual=x,
            keep=True,
            keep_aggregate=keep_aggregate,
        )
        ctx.x_format, ctx.aggregate_kept = dense_memory_format(x), keep_aggregate
        ctx.save_for_backward(q_pixels, k_pixels, x, qk_weight, value_weight, value_bias, gamma, *kept)
        return y

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        q_pixels, k_pixels, x, qk_weight, value_weight, value_bias, gamma, *kept = ctx.saved_tensors
        need_x, need_qk_w, need_qk_b, need_v_w, need_v_b, need_gamma, _ = ctx.needs_input_grad
        grads = fast_backward(
            grad_out,
            q_pixels,
            k_pixels,
            x,
            ctx.plan,
            kept,
            need_qk=True,
            need_v=True,
            v_is_residual=True,
            qk_weight=qk_weight,
            value_weight=value_weight,
            value_bias=value_bias,
            gamma=gamma,
            need_gamma=need_gamma,
            aggregate_kept=ctx.aggregate_kept,
        )
        return (
            in_memory_format(grads.v, ctx.x_format) if need_x else None,
            grads.qk_weight if need_qk_w else None,
            grads.qk_bias if need_qk_b else None,
            grads.value_weight if need_v_w else None,
            grads.value_bias if need_v_b else None,
            grads.gamma,
            None,
        )
