"""Backward of the fast path, chunk by chunk along the forward's plan, on pixel-major tensors.

Gradients of y = r + A v (the functional op, r = 0) or y = v + gamma (W (A v) + b) with q, k = W_qk v + b_qk
(the CCA block, v = x). With z = A v and dy the incoming gradient:

* value projection: G = sum_u dy_u z_u^T gives dW = gamma G and dgamma = <W, G> + <b, sum_u dy_u>;
* attention, on h = gamma W^T dy (or h = dy without a projection): dA(u, i) = <h_u, v_i>,
  dE = A (dA - sum_j A dA) jointly over the axes of the criss-cross set, dq_u = sum_i dE(u, i) k_i,
  dk_i = sum_u dE(u, i) q_u, dv_i = sum_u A(u, i) h_u;
* q/k projection (block): dv += W_qk^T [dq, dk], dW_qk = sum_u [dq, dk]_u v_u^T, db_qk = sum_u [dq, dk]_u;
* residual (block): dv starts as dy.

Memory: backward frees every tensor of a chunk as soon as it is done with it (the ones forward kept with
:func:`_release`) and allocates dq/dk only when it needs them. Tensors named ``*_pixels`` are pixel-major
(B, *S, C); ``_b`` names one batch element (S0, *rest, C).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ccnet.ops import chunks
from ccnet.ops.chunks import Chunk
from ccnet.ops.layout import pixel_major
from ccnet.ops.lines import add_bmm, axis0_lines, in_chunk_energies, in_chunk_products_into, weight_rows
from ccnet.ops.projection import add_projection_weight_grad, project


class Gradients(NamedTuple):
    """What :func:`fast_backward` returns; None for what was not computed.

    q, k: (B, C', *S) channels-first views of the gradients of q and k (the functional op; None for the
    block, where q and k come from ``qk_weight``). v: (B, C, *S), channels-first view; for the block, the
    whole gradient of x. qk_weight (2C', C), qk_bias (2C',): the block's q/k projection. value_weight,
    value_bias: with a value projection. gamma: with ``need_gamma``. The input gradients are in the dtype of
    the computation (softmax dtype for q and k), the parameter gradients in the parameters' dtype.
    """

    q: Tensor | None
    k: Tensor | None
    v: Tensor | None
    qk_weight: Tensor | None
    qk_bias: Tensor | None
    value_weight: Tensor | None
    value_bias: Tensor | None
    gamma: Tensor | None


def _release(t: Tensor) -> None:
    """Free the memory of a tensor that the forward kept for backward, as soon as backward is done with it.

    Saved tensors live until the node's whole backward returns; freeing each chunk's share when it is used
    keeps the backward peak where recomputation would have it. A second backward through the same graph
    (``retain_graph``) finds the storage empty and recomputes instead (:func:`_still_stored`).
    """
    t.untyped_storage().resize_(0)


def _still_stored(kept: list[Tensor]) -> bool:
    """Whether a chunk's kept tensors still hold their memory (an earlier backward frees them)."""
    return bool(kept) and all(t.untyped_storage().nbytes() > 0 for t in kept)


def _channels_first(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.movedim(-1, 1)


def fast_backward(
    grad_out: Tensor,
    q_pixels: Tensor,
    k_pixels: Tensor,
    v: Tensor,
    plan: list[Chunk],
    kept: list[Tensor],
    *,
    need_qk: bool,
    need_v: bool,
    v_is_residual: bool,
    qk_weight: Tensor | None = None,
    value_weight: Tensor | None = None,
    value_bias: Tensor | None = None,
    gamma: Tensor | None = None,
    need_gamma: bool = False,
    aggregate_kept: bool = True,
) -> Gradients:
    """Gradients of the forward of :func:`ccnet.ops.fast_forward.fast_forward`, from its results.

    grad_out: (B, C_out, *S); q_pixels, k_pixels, plan, kept: as the forward returned them; v: its input
    as given. ``v_is_residual``: y includes v itself (the block). With ``qk_weight`` (q and k projected
    from v), the projection's backward is done here too and its weight gradients are returned instead of
    dq and dk. ``kept`` holds what the forward kept for each chunk (``aggregate_kept``: with its aggregate z,
    else z is recomputed); each chunk's share is freed once used, and recomputed if an earlier backward has
    freed it.
    """
    v_pixels = pixel_major(v)
    num_axes = v_pixels.dim() - 2
    grad_out_pixels = grad_out.movedim(1, -1)  # (B, *S, C_out) view; chunks are copied when needed
    grad_v_pixels = None
    if need_v:
        if v_is_residual:  # the residual's gradient, dy, is where dv starts
            grad_v_pixels = grad_out_pixels.to(
                v_pixels.dtype, memory_format=torch.contiguous_format, copy=True
            )
        else:
            grad_v_pixels = torch.zeros_like(v_pixels)
    grad_qk_pixels = None  # (B, *S, 2C'), dq then dk; allocated when first needed, which lowers the peak
    dy_z_outer = dy_sum = scaled_weight_t = None
    if value_weight is not None:
        dy_z_outer = v_pixels.new_zeros(value_weight.shape, dtype=q_pixels.dtype)  # G (C_out, C_in)
        dy_sum = v_pixels.new_zeros(value_weight.shape[0], dtype=q_pixels.dtype)  # sum_u dy_u
        # gamma W^T, reused by every chunk: scaling the (C_in, C_out) weights saves a pass over each chunk's h
        scaled_weight_t = (value_weight * gamma).t().contiguous()
    kept_per_chunk = num_axes + (value_weight is not None and aggregate_kept)  # the weights of each axis, z
    for index, (b, start, stop) in enumerate(plan):
        chunk_kept = kept[index * kept_per_chunk : (index + 1) * kept_per_chunk]
        kept_aggregate = None
        if _still_stored(chunk_kept):
            weights = chunk_kept[:num_axes]
            kept_aggregate = chunk_kept[num_axes] if len(chunk_kept) > num_axes else None
        else:
            weights = chunks.attention_weights(q_pixels[b], k_pixels[b], start, stop)
        if v_is_residual and value_weight is not None and stop - start == v_pixels.shape[1]:
            # dv starts as a copy of dy and nothing has been added to this element yet (the chunk spans it),
            # so dy is read from there instead of copied again; h below is a new tensor, not a view of dy.
            dy = grad_v_pixels[b]
        else:
            dy = grad_out_pixels[b, start:stop].to(v_pixels.dtype).contiguous()  # (n, *rest, C_out)
        h = dy  # (n, *rest, C_in): gradient w.r.t. the aggregate
        if value_weight is not None:
            if kept_aggregate is not None:
                z = kept_aggregate
            else:
                z = chunks.aggregate(weights, v_pixels[b], start, stop)
            add_projection_weight_grad(dy_z_outer, dy, z)
            dy_sum += dy.reshape(-1, dy.shape[-1]).sum(0).to(dy_sum.dtype)
            _release(z)
            del z, kept_aggregate
            h = project(dy, scaled_weight_t, None)
        if grad_v_pixels is not None:
            _add_value_grad(weights, h, v_pixels[b], start, stop, grad_v_pixels[b])
        grad_e = _energy_grads(weights, h, v_pixels[b], start, stop) if need_qk else None
        del h  # what follows needs only dE: h and the weights go before dq and dk are accumulated
        for weight in weights:
            _release(weight)
        if grad_e is not None:
            if grad_qk_pixels is None:
                grad_qk_pixels = v_pixels.new_zeros(
                    (*q_pixels.shape[:-1], 2 * q_pixels.shape[-1]), dtype=q_pixels.dtype
                )
            _add_qk_grads(grad_e, q_pixels[b], k_pixels[b], start, stop, grad_qk_pixels[b])
    grad_value_weight = grad_value_bias = grad_gamma = None
    if value_weight is not None:
        if need_gamma:
            grad_gamma = (dy_z_outer * value_weight.view_as(dy_z_outer)).sum()
            if value_bias is not None:
                grad_gamma = grad_gamma + (dy_sum * value_bias).sum()
            grad_gamma = grad_gamma.to(gamma.dtype)
        grad_value_weight = (dy_z_outer * gamma).view_as(value_weight).to(value_weight.dtype)
        grad_value_bias = (dy_sum * gamma).to(value_weight.dtype)
    if qk_weight is not None:
        grad_qk_weight, grad_qk_bias = _qk_projection_backward(
            grad_qk_pixels, v_pixels, grad_v_pixels, qk_weight, plan
        )
        return Gradients(
            q=None,
            k=None,
            v=grad_v_pixels.movedim(-1, 1),
            qk_weight=grad_qk_weight,
            qk_bias=grad_qk_bias,
            value_weight=grad_value_weight,
            value_bias=grad_value_bias,
            gamma=grad_gamma,
        )
    reduced = q_pixels.shape[-1]
    grad_q, grad_k = (
        (None, None)
        if grad_qk_pixels is None
        else (grad_qk_pixels[..., :reduced], grad_qk_pixels[..., reduced:])
    )
    return Gradients(
        q=_channels_first(grad_q),
        k=_channels_first(grad_k),
        v=_channels_first(grad_v_pixels),
        qk_weight=None,
        qk_bias=None,
        value_weight=grad_value_weight,
        value_bias=grad_value_bias,
        gamma=grad_gamma,
    )


def _qk_projection_backward(
    grad_qk_pixels: Tensor, v_pixels: Tensor, grad_v_pixels: Tensor, qk_weight: Tensor, plan: list[Chunk]
) -> tuple[Tensor, Tensor]:
    """Backward of qk = W_qk v + b_qk, chunk by chunk: dv += W_qk^T dqk in place; returns (dW_qk, db_qk)."""
    grad_weight = torch.zeros_like(qk_weight, dtype=grad_qk_pixels.dtype)
    for b, start, stop in plan:
        grad_qk = grad_qk_pixels[b, start:stop].to(v_pixels.dtype)
        # accumulated in place by the matmul: no (n, *rest, C) temporary and no separate add
        grad_v_pixels[b, start:stop].view(-1, grad_v_pixels.shape[-1]).addmm_(
            grad_qk.reshape(-1, grad_qk.shape[-1]), qk_weight
        )
        add_projection_weight_grad(grad_weight, grad_qk, v_pixels[b, start:stop])
    grad_bias = grad_qk_pixels.reshape(-1, grad_qk_pixels.shape[-1]).sum(0)
    return grad_weight.to(qk_weight.dtype), grad_bias.to(qk_weight.dtype)


def _add_value_grad(
    weights: list[Tensor], h: Tensor, v_b: Tensor, start: int, stop: int, grad_v_b: Tensor
) -> None:
    """dv_i += sum_u A(u, i) h_u over the chunk's queries u; v_b, grad_v_b: one element (S0, *rest, C)."""
    for d in range(1, v_b.dim() - 1):
        a = weights[d].to(v_b.dtype)
        in_chunk_products_into(grad_v_b[start:stop], a, h, d, transpose=True, accumulate=True)
    add_bmm(axis0_lines(grad_v_b), weights[0].to(v_b.dtype).transpose(1, 2), axis0_lines(h))


def _energy_grads(weights: list[Tensor], h: Tensor, v_b: Tensor, start: int, stop: int) -> list[Tensor]:
    """Gradients of the chunk's energies, laid out like its weights, in their dtype.

    dA(u, i) = <h_u, v_i>, then dE = A dA - A sum_j A dA jointly over the axes, in place (no temporaries).
    """
    dtype = weights[0].dtype
    grad_e = [torch.bmm(axis0_lines(h), axis0_lines(v_b).transpose(1, 2)).to(dtype)]  # (R, n, S0)
    for d in range(1, v_b.dim() - 1):
        grad_e.append(in_chunk_energies(h, v_b[start:stop], d).to(dtype))
    weighted = weights[0].new_zeros(h.shape[:-1])  # (n, *rest): sum_j A dA
    for d, (weight, grad) in enumerate(zip(weights, grad_e)):
        weight_rows(weighted, d).add_(grad.mul_(weight).sum(-1))
    for d, (weight, grad) in enumerate(zip(weights, grad_e)):
        grad.addcmul_(weight, weight_rows(weighted, d).unsqueeze(-1), value=-1)
    return grad_e


def _add_qk_grads(
    grad_e: list[Tensor], q_b: Tensor, k_b: Tensor, start: int, stop: int, grad_qk_b: Tensor
) -> None:
    """dq_u += sum_i dE(u, i) k_i and dk_i += sum_u dE(u, i) q_u; grad_qk_b: one element (S0, *rest, 2C'),
    dq then dk."""
    reduced = q_b.shape[-1]
    grad_q_b, grad_k_b = grad_qk_b[..., :reduced], grad_qk_b[..., reduced:]
    q_chunk, k_chunk = q_b[start:stop], k_b[start:stop]
    for d in range(1, q_b.dim() - 1):
        in_chunk_products_into(grad_q_b[start:stop], grad_e[d], k_chunk, d, transpose=False, accumulate=True)
        in_chunk_products_into(grad_k_b[start:stop], grad_e[d], q_chunk, d, transpose=True, accumulate=True)
    add_bmm(axis0_lines(grad_q_b, start, stop), grad_e[0], axis0_lines(k_b))
    add_bmm(axis0_lines(grad_k_b), grad_e[0].transpose(1, 2), axis0_lines(q_b, start, stop))
