"""The criss-cross attention kernel shared by the 2-D and 3-D ops and modules.

Semantics (N = 2 or 3 grid axes): position u attends once to every position that differs from u in at most one
grid coordinate (its row and column; in 3-D also its time line): H + W - 1 positions in 2-D, T + H + W - 2 in
3-D, with one softmax over all of them. The energy is <query_u, key_i>; the output is the weighted sum of
values. ``u`` itself lies on every line; it is kept in the last axis and masked (-inf) in the others.

Two implementations of the same maths:

* the fast path (eager): a custom autograd Function on channels-last tensors, where every line is a matrix
  with unit channel stride, so batched matmuls read it in place. It works one batch element and one block of
  rows ("chunk", see ``_lines``) at a time, with a joint softmax computed in place without concatenation.
  It can also fold the value projection, the ``gamma`` scale and the residual of the CCA module into the
  same pass (``y = residual + gamma * (W (A x) + b)``): projecting after aggregation is the same linear map
  as aggregating projected values, because every row of A sums to one. The only temporaries of size
  (B, C, H, W) are then the output and, for inputs that are not channels-last, their channels-last copy.
  For backward it saves q and k, its inputs as given, and what backward would otherwise recompute: each
  chunk's attention weights and, with the projection, its aggregate A x. Backward frees every tensor of a
  chunk as soon as it is done with it (kept ones with ``_release``) and allocates dq/dk only when it needs
  them. Measured at (1, 512, 97, 97), R=2, against recomputing and keeping a channels-last copy of the input
  instead: forward+backward 12% faster, live training peak 106 vs 108 MB. The 1x1 projections run as
  channels-last convolutions; on CPU in float32 they call oneDNN directly (``use_onednn``), which
  ``F.conv2d`` does only with more than one thread.
* the portable path: the same maths in plain differentiable tensor ops, with no shape-dependent Python loop,
  used when tracing, compiling or exporting (TorchScript, ``torch.compile``, ONNX), and for small problems
  (``SMALL_PROBLEM_ELEMENTS``), where it is faster.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils import flop_counter

from ccnet.ops._lines import (
    add_bmm,
    global_grid,
    global_lines,
    local_energies,
    local_grid,
    local_products_into,
)

# Rows of axis 0 per chunk are chosen so that a chunk holds at most this many elements of the widest
# per-position tensor (32 MB in float32), which bounds the temporaries of large inputs. Large chunks pay: in
# backward the axis-0 products contract over the chunk's rows (63 vs 51 GFLOP/s here at 97 vs 49 rows).
# Measured at (1, 512, 97, 97), R=2: one chunk (this budget) instead of two makes forward+backward 4-8%
# faster; live training peak 106 MB (peak RSS 110-121 MB: it varies with heap fragmentation; the budget,
# 0.36x of the einsum formulation, is 126-139 MB).
CHUNK_ELEMENTS = 1 << 23
# Below this many elements per batch element, the per-chunk Python work of the fast path costs more than
# it saves: the portable path is faster there (measured: 2x at (8, 32, 16, 16), equal at (2, 128, 32, 32)).
SMALL_PROBLEM_ELEMENTS = 1 << 16


def _softmax_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types (and float32), float64 stays float64."""
    return torch.promote_types(dtype, torch.float32)


_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def _pixel_major(t: Tensor) -> Tensor:
    """(B, C, *S) -> contiguous (B, *S, C); free for channels-last inputs."""
    if t.dim() in _CHANNELS_LAST:
        # The memory-format conversion has a blocked transpose kernel: 3x faster here (2-D, warm memory) than
        # the generic strided copy that ``movedim(...).contiguous()`` makes.
        t = t.contiguous(memory_format=_CHANNELS_LAST[t.dim()])
    return t.movedim(1, -1).contiguous()


def _chunk_plan(v: Tensor, out_channels: int) -> list[tuple[int, int, int]]:
    """The chunks of channels-first v (B, C, *S) for an output of ``out_channels`` channels: (batch index,
    first row, stop row) blocks of axis 0 covering every batch element, each holding at most
    ``CHUNK_ELEMENTS`` elements of the widest per-position tensor (at least one row). Forward and backward
    walk the same plan.

    Blocks have equal sizes (within one row): a small remainder block would run inefficient small matmuls.
    """
    batch, rows = v.shape[0], v.shape[2]
    row_elements = math.prod(v.shape[3:]) * max(v.shape[1], out_channels)
    count = math.ceil(rows / max(1, CHUNK_ELEMENTS // max(1, row_elements)))
    step = math.ceil(rows / count)
    return [(b, start, min(start + step, rows)) for b in range(batch) for start in range(0, rows, step)]


# ----------------------------------------------------------------------------------------------------------
# fast path: one chunk (batch element b, rows [start, stop) of axis 0); tensors are pixel-major, per element


def _chunk_weights(qb: Tensor, kb: Tensor, start: int, stop: int) -> list[Tensor]:
    """Joint softmax weights of the chunk's queries, in the dtype of qb/kb (S0, *rest, C').

    Returns [axis-0 weights (R, n, S0), then (P, Q, L, L) for each local axis 1..N-1].
    """
    num_axes = qb.dim() - 1
    q_chunk, k_chunk = qb[start:stop], kb[start:stop]
    global_energy = torch.bmm(global_lines(qb, start, stop), global_lines(kb).transpose(1, 2))  # (R, n, S0)
    # u itself is counted once, in the last axis; the diagonal of axis 0 is offset by the chunk start.
    global_energy.diagonal(offset=start, dim1=1, dim2=2).fill_(float("-inf"))
    energies = [global_energy]
    for d in range(1, num_axes):
        energy = local_energies(q_chunk, k_chunk, d)
        if d != num_axes - 1:
            energy.diagonal(dim1=-2, dim2=-1).fill_(float("-inf"))
        energies.append(energy)
    row_max = q_chunk.new_empty(q_chunk.shape[:-1])  # (n, *rest)
    _grid(row_max, 0).copy_(global_energy.amax(-1))
    for d in range(1, num_axes):
        view = _grid(row_max, d)
        torch.maximum(view, energies[d].amax(-1), out=view)
    total = torch.zeros_like(row_max)
    for d, energy in enumerate(energies):
        energy.sub_(_grid(row_max, d).unsqueeze(-1)).exp_()
        _grid(total, d).add_(energy.sum(-1))
    total.reciprocal_()
    for d, energy in enumerate(energies):
        energy.mul_(_grid(total, d).unsqueeze(-1))
    return energies


def _grid(t: Tensor, d: int) -> Tensor:
    """Per-position chunk tensor (n, *rest) aligned with the rows of the axis-``d`` weights."""
    return global_grid(t) if d == 0 else local_grid(t, d)


def _chunk_aggregate(weights: list[Tensor], vb: Tensor, start: int, stop: int) -> Tensor:
    """z_u = sum over the criss-cross set of u of A(u, i) v_i for the chunk's positions: (n, *rest, C)."""
    num_axes = vb.dim() - 1
    weights = [w.to(vb.dtype) for w in weights]
    v_chunk = vb[start:stop]
    out = torch.empty_like(v_chunk)
    last = num_axes - 1
    local_products_into(out, weights[last], v_chunk, last, transpose=False, accumulate=False)
    for d in range(1, last):
        local_products_into(out, weights[d], v_chunk, d, transpose=False, accumulate=True)
    add_bmm(global_lines(out), weights[0], global_lines(vb))
    return out


def use_onednn(t: Tensor) -> bool:
    """Whether the 1x1 products of ``t`` run on oneDNN's convolution directly (CPU float32).

    ``F.conv2d`` picks oneDNN for these shapes only with more than one thread: single-threaded, it falls back
    to a slow im2col kernel (measured 4.5x slower at 512 -> 512 channels). oneDNN has no float64 kernels,
    and other devices have their own convolution libraries, so everything else keeps ``F.conv2d``.
    """
    return t.device.type == "cpu" and t.dtype == torch.float32 and torch.backends.mkldnn.is_available()


def _mkldnn_convolution_flops(
    x_shape, w_shape, bias, padding, stride, dilation, groups, *, out_shape, **kwargs
):
    return flop_counter.conv_flop_count(x_shape, w_shape, out_shape)


# torch's FLOP counter knows F.conv2d but not the oneDNN op it dispatches to, so without this the projections
# of the CPU path would count as 0 FLOPs (``ccnet info``, ``ccnet bench``, the benchmarks).
if torch.ops.aten.mkldnn_convolution not in flop_counter.flop_registry:
    flop_counter.register_flop_formula(torch.ops.aten.mkldnn_convolution)(_mkldnn_convolution_flops)


def _pointwise(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """A 1x1 convolution of pixel-major x (..., C_in) with weight (C_out, C_in): (..., C_out).

    Runs as a channels-last convolution, which on CPU uses oneDNN (about twice as fast here as a plain
    matmul).
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


def _add_pointwise_weight_grad(out: Tensor, g: Tensor, x: Tensor) -> None:
    """out += sum over positions of g x^T for pixel-major g (..., C_out), x (..., C_in); out (C_out, C_in).

    The weight gradient of :func:`_pointwise`, as one matmul with a transposed operand: oneDNN's convolution
    backward computes the same but measured 3.4x slower here with two threads (equal with one).
    """
    g2, x2 = g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1])
    if out.dtype == g2.dtype == x2.dtype:
        out.addmm_(g2.t(), x2)
    else:
        out += (g2.t() @ x2).to(out.dtype)


def _fast_forward(
    q: Tensor | None,
    k: Tensor | None,
    v: Tensor,
    num_axes: int,
    proj_weight: Tensor | None,
    proj_bias: Tensor | None,
    gamma: Tensor | None,
    residual: Tensor | None,
    qk_weight: Tensor | None = None,
    qk_bias: Tensor | None = None,
    *,
    keep: bool = False,
) -> tuple[Tensor, Tensor, Tensor, list[tuple[int, int, int]], list[Tensor]]:
    """y = residual + gamma * proj(A v), each part optional; channels-first in and out.

    With ``qk_weight`` (2C', C) given, q and k are None and come from a 1x1 projection of v (the CCA block).
    Returns y (channels-last memory), the pixel-major q and k (softmax dtype), the chunk plan and, with
    ``keep``, what backward would otherwise recompute, chunk after chunk: the attention weights (see
    :func:`_chunk_weights`) and, with a projection, the aggregate z = A v.
    """
    vp = _pixel_major(v)
    if qk_weight is not None:
        qk = _pointwise(vp, qk_weight, qk_bias).to(_softmax_dtype(vp.dtype))  # (B, *S, 2C')
        reduced = qk.shape[-1] // 2
        qp, kp = qk[..., :reduced], qk[..., reduced:]  # views: the line views accept the channel stride
    else:
        dtype = _softmax_dtype(q.dtype)
        qp, kp = _pixel_major(q).to(dtype), _pixel_major(k).to(dtype)
    out_channels = v.shape[1] if proj_weight is None else proj_weight.shape[0]
    plan = _chunk_plan(v, out_channels)
    # With one chunk, its result becomes the output: no second buffer of the output's size.
    y = None if len(plan) == 1 else vp.new_empty((*vp.shape[:-1], out_channels))
    # The residual as a pixel-major view; when it is v, its contiguous copy reads faster than a strided view.
    residual_p = vp if residual is v else (None if residual is None else residual.movedim(1, -1))
    if proj_weight is not None and gamma is not None:
        # gamma (W z + b) as one projection: scaling the (C_out, C_in) weights saves a pass over the output
        proj_weight = proj_weight * gamma
        proj_bias = None if proj_bias is None else proj_bias * gamma
        gamma = None
    kept = []
    for b, start, stop in plan:
        weights = _chunk_weights(qp[b], kp[b], start, stop)
        out = _chunk_aggregate(weights, vp[b], start, stop)
        if keep:
            kept += weights if proj_weight is None else [*weights, out]
        if proj_weight is not None:
            out = _pointwise(out, proj_weight, proj_bias)
        elif gamma is not None:
            out.mul_(gamma)
        if y is None:
            y = out.unsqueeze(0)
            if residual_p is not None:
                y.add_(residual_p)
        elif residual_p is None:
            y[b, start:stop] = out
        else:
            torch.add(out, residual_p[b, start:stop], out=y[b, start:stop])
    return y.movedim(-1, 1), qp, kp, plan, kept


def _dense_format(t: Tensor) -> torch.memory_format | None:
    """The memory format in which ``t`` is dense: contiguous, channels-last, or None for other strides."""
    for memory_format in (torch.contiguous_format, _CHANNELS_LAST.get(t.dim())):
        if memory_format is not None and t.is_contiguous(memory_format=memory_format):
            return memory_format
    return None


def _in_input_format(grad: Tensor | None, memory_format: torch.memory_format | None) -> Tensor | None:
    """A gradient in its input's memory format (None: as computed).

    The fast path computes gradients channels-last (q and k as channel slices of one buffer); handing them
    back in the input's format keeps the layers upstream on their own layout, and autograd would make the
    same copy when accumulating into a leaf.
    """
    return grad if grad is None or memory_format is None else grad.contiguous(memory_format=memory_format)


def _release(t: Tensor) -> None:
    """Free the memory of a tensor that the forward kept for backward, as soon as backward is done with it.

    Saved tensors live until the node's whole backward returns; freeing each chunk's share when it is used
    keeps the backward peak where recomputation would have it. A second backward through the same graph
    (``retain_graph``) finds the storage empty and recomputes instead (:func:`_usable`).
    """
    t.untyped_storage().resize_(0)


def _usable(kept: list[Tensor]) -> bool:
    return bool(kept) and all(t.untyped_storage().nbytes() > 0 for t in kept)


class _CrissCrossFunction(torch.autograd.Function):
    """Autograd for the functional op out = A v: saves q and k (pixel-major), v as given and the attention
    weights."""

    @staticmethod
    def forward(ctx, q, k, v, num_axes):  # type: ignore[override]
        y, qp, kp, ctx.plan, kept = _fast_forward(q, k, v, num_axes, None, None, None, None, keep=True)
        ctx.q_dtype, ctx.k_dtype = q.dtype, k.dtype
        ctx.input_formats = (_dense_format(q), _dense_format(k), _dense_format(v))
        ctx.save_for_backward(qp, kp, v, *kept)
        return y

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        qp, kp, v, *kept = ctx.saved_tensors
        need_q, need_k, need_v, _ = ctx.needs_input_grad
        grad_q, grad_k, grad_v, *_ = _fast_backward(
            grad_out,
            qp,
            kp,
            v,
            ctx.plan,
            kept,
            need_qk=need_q or need_k,
            need_v=need_v,
            add_grad_out_to_v=False,
        )
        grad_q = grad_q.to(ctx.q_dtype) if need_q else None
        grad_k = grad_k.to(ctx.k_dtype) if need_k else None
        grads = (grad_q, grad_k, grad_v)
        return (*map(_in_input_format, grads, ctx.input_formats), None)


class _CCABlockFunction(torch.autograd.Function):
    """Autograd for the whole CCA block y = x + gamma * (W_v (A x) + b_v), q/k = W_qk x + b_qk.

    Saves x as given, q and k (pixel-major), the parameters, and per chunk the attention weights and the
    aggregate z = A x (one (B, C, *S) tensor in all), which backward would otherwise recompute (15% of its
    time at (1, 512, 97, 97)); the gradient of x (residual + attention + projection) is accumulated in one
    buffer.
    """

    @staticmethod
    def forward(ctx, x, num_axes, qk_weight, qk_bias, value_weight, value_bias, gamma):  # type: ignore[override]
        y, qp, kp, ctx.plan, kept = _fast_forward(
            None,
            None,
            x,
            num_axes,
            value_weight,
            value_bias,
            gamma,
            x,
            qk_weight=qk_weight,
            qk_bias=qk_bias,
            keep=True,
        )
        ctx.x_format = _dense_format(x)
        ctx.save_for_backward(qp, kp, x, qk_weight, value_weight, value_bias, gamma, *kept)
        return y

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        qp, kp, x, qk_weight, value_weight, value_bias, gamma, *kept = ctx.saved_tensors
        need_x, _, need_qk_w, need_qk_b, need_v_w, need_v_b, need_gamma = ctx.needs_input_grad
        grad_qk_w, grad_qk_b, grad_x, grad_v_w, grad_v_b, grad_gamma = _fast_backward(
            grad_out,
            qp,
            kp,
            x,
            ctx.plan,
            kept,
            value_weight,
            value_bias,
            gamma,
            need_qk=True,
            need_v=True,
            need_gamma=need_gamma,
            add_grad_out_to_v=True,
            qk_weight=qk_weight,
        )
        return (
            _in_input_format(grad_x, ctx.x_format) if need_x else None,
            None,
            grad_qk_w if need_qk_w else None,
            grad_qk_b if need_qk_b else None,
            grad_v_w if need_v_w else None,
            grad_v_b if need_v_b else None,
            grad_gamma,
        )


def _fast_backward(
    grad_out: Tensor,
    qp: Tensor,
    kp: Tensor,
    v: Tensor,
    plan: list[tuple[int, int, int]],
    kept: list[Tensor],
    proj_weight: Tensor | None = None,
    proj_bias: Tensor | None = None,
    gamma: Tensor | None = None,
    *,
    need_qk: bool,
    need_v: bool,
    need_gamma: bool = False,
    add_grad_out_to_v: bool,
    qk_weight: Tensor | None = None,
) -> tuple[Tensor | None, ...]:
    """Gradients of y = r + A v or y = r + gamma (W (A v) + b), chunk by chunk along the forward's ``plan``.

    ``kept`` holds what :func:`_fast_forward` kept for each chunk (attention weights, then z = A v with a
    projection); each chunk's share is freed once used, and recomputed if an earlier backward has freed it.
    With z and dy the incoming gradient: G = sum_u dy_u z_u^T gives dW = gamma G and
    dgamma = <W, G> + <b, sum_u dy_u>; the attention backward then runs on h = gamma W^T dy (or dy):
    dA(u, i) = <h_u, v_i>, dE = A (dA - sum_j A dA) jointly over the axes, dq_u = sum_i dE(u, i) k_i,
    dk_i = sum_u dE(u, i) q_u, dv_i = sum_u A(u, i) h_u. With ``qk_weight`` (q and k projected from v) the
    projection's backward is done here too: dv += W_qk^T [dq, dk], and the returned dq, dk are replaced by
    the gradients of W_qk and b_qk.
    """
    vp = _pixel_major(v)
    num_axes = vp.dim() - 2
    gp = grad_out.movedim(1, -1)  # (B, *S, C_out) view; chunks are copied when needed
    grad_v = None
    if need_v:
        if add_grad_out_to_v:  # the residual's gradient, dy, is where dv starts
            grad_v = gp.to(vp.dtype, memory_format=torch.contiguous_format, copy=True)
        else:
            grad_v = torch.zeros_like(vp)
    grad_qk = None  # (B, *S, 2C'), dq then dk; allocated when first needed, which lowers the peak
    outer = grad_sum = weight_t = None
    if proj_weight is not None:
        outer = vp.new_zeros(proj_weight.shape, dtype=qp.dtype)  # G (C_out, C_in)
        grad_sum = vp.new_zeros(proj_weight.shape[0], dtype=qp.dtype)
        # gamma W^T, reused by every chunk: scaling the (C_in, C_out) weights saves a pass over each chunk's h
        weight_t = (proj_weight * gamma).t().contiguous()
    per_chunk = num_axes + (proj_weight is not None)
    for index, (b, start, stop) in enumerate(plan):
        chunk_kept = kept[index * per_chunk : (index + 1) * per_chunk]
        kept_z = None
        if _usable(chunk_kept):
            weights = chunk_kept[:num_axes]
            kept_z = chunk_kept[num_axes] if proj_weight is not None else None
        else:
            weights = _chunk_weights(qp[b], kp[b], start, stop)
        if add_grad_out_to_v and proj_weight is not None and stop - start == vp.shape[1]:
            # dv starts as a copy of dy and nothing has been added to this element yet (the chunk spans it),
            # so dy is read from there instead of copied again; h below is a new tensor, not a view of g.
            g = grad_v[b]
        else:
            g = gp[b, start:stop].to(vp.dtype).contiguous()  # (n, *rest, C_out)
        h = g  # (n, *rest, C_in): gradient w.r.t. the aggregate
        if proj_weight is not None:
            z = kept_z if kept_z is not None else _chunk_aggregate(weights, vp[b], start, stop)
            _add_pointwise_weight_grad(outer, g, z)
            grad_sum += g.reshape(-1, g.shape[-1]).sum(0).to(grad_sum.dtype)
            _release(z)
            del z, kept_z
            h = _pointwise(g, weight_t, None)
        if grad_v is not None:
            _chunk_value_grad(weights, h, vp[b], start, stop, grad_v[b])
        grad_e = _chunk_energy_grad(weights, h, vp[b], start, stop) if need_qk else None
        del h  # what follows needs only dE: h and the weights go before dq and dk are accumulated
        for weight in weights:
            _release(weight)
        if grad_e is not None:
            if grad_qk is None:
                grad_qk = vp.new_zeros((*qp.shape[:-1], 2 * qp.shape[-1]), dtype=qp.dtype)
            _chunk_qk_grads(grad_e, qp[b], kp[b], start, stop, grad_qk[b])
    grad_w = grad_b = grad_gamma = None
    if proj_weight is not None:
        if need_gamma:
            grad_gamma = (outer * proj_weight.view_as(outer)).sum()
            if proj_bias is not None:
                grad_gamma = grad_gamma + (grad_sum * proj_bias).sum()
            grad_gamma = grad_gamma.to(gamma.dtype)
        grad_w = (outer * gamma).view_as(proj_weight).to(proj_weight.dtype)
        grad_b = (grad_sum * gamma).to(proj_weight.dtype)
    if qk_weight is not None:
        grad_q, grad_k = _projection_backward(grad_qk, vp, grad_v, qk_weight, plan)
        return (grad_q, grad_k, grad_v.movedim(-1, 1), grad_w, grad_b, grad_gamma)
    reduced = qp.shape[-1]
    grad_q, grad_k = (None, None) if grad_qk is None else (grad_qk[..., :reduced], grad_qk[..., reduced:])
    channels_first = [None if t is None else t.movedim(-1, 1) for t in (grad_q, grad_k, grad_v)]
    return (*channels_first, grad_w, grad_b, grad_gamma)


def _projection_backward(
    grad_qk: Tensor, vp: Tensor, grad_v: Tensor, qk_weight: Tensor, plan: list[tuple[int, int, int]]
) -> tuple[Tensor, Tensor]:
    """Backward of qk = W_qk v + b_qk, chunk by chunk: dv += W_qk^T dqk in place; returns (dW_qk, db_qk)."""
    grad_weight = torch.zeros_like(qk_weight, dtype=grad_qk.dtype)
    for b, start, stop in plan:
        g = grad_qk[b, start:stop].to(vp.dtype)
        # accumulated in place by the matmul: no (n, *rest, C) temporary and no separate add
        grad_v[b, start:stop].view(-1, grad_v.shape[-1]).addmm_(g.reshape(-1, g.shape[-1]), qk_weight)
        _add_pointwise_weight_grad(grad_weight, g, vp[b, start:stop])
    grad_bias = grad_qk.reshape(-1, grad_qk.shape[-1]).sum(0)
    return grad_weight.to(qk_weight.dtype), grad_bias.to(qk_weight.dtype)


def _chunk_value_grad(
    weights: list[Tensor], h: Tensor, vb: Tensor, start: int, stop: int, grad_vb: Tensor
) -> None:
    """dv_i += sum_u A(u, i) h_u over the chunk's queries u; vb, grad_vb: per-element (S0, *rest, C)."""
    for d in range(1, vb.dim() - 1):
        a = weights[d].to(vb.dtype)
        local_products_into(grad_vb[start:stop], a, h, d, transpose=True, accumulate=True)
    add_bmm(global_lines(grad_vb), weights[0].to(vb.dtype).transpose(1, 2), global_lines(h))


def _chunk_energy_grad(weights: list[Tensor], h: Tensor, vb: Tensor, start: int, stop: int) -> list[Tensor]:
    """Gradients of the chunk's energies, laid out like its weights, in their dtype.

    dA(u, i) = <h_u, v_i>, then dE = A dA - A sum_j A dA jointly over the axes, in place (no temporaries).
    """
    dtype = weights[0].dtype
    grad_e = [torch.bmm(global_lines(h), global_lines(vb).transpose(1, 2)).to(dtype)]  # (R, n, S0)
    for d in range(1, vb.dim() - 1):
        grad_e.append(local_energies(h, vb[start:stop], d).to(dtype))
    weighted = weights[0].new_zeros(h.shape[:-1])  # (n, *rest): sum_j A dA
    for d, (weight, grad) in enumerate(zip(weights, grad_e)):
        _grid(weighted, d).add_(grad.mul_(weight).sum(-1))
    for d, (weight, grad) in enumerate(zip(weights, grad_e)):
        grad.addcmul_(weight, _grid(weighted, d).unsqueeze(-1), value=-1)
    return grad_e


def _chunk_qk_grads(
    grad_e: list[Tensor], qb: Tensor, kb: Tensor, start: int, stop: int, grad_qkb: Tensor
) -> None:
    """dq_u += sum_i dE(u, i) k_i and dk_i += sum_u dE(u, i) q_u; grad_qkb: per-element (S0, *rest, 2C'),
    dq then dk."""
    reduced = qb.shape[-1]
    grad_qb, grad_kb = grad_qkb[..., :reduced], grad_qkb[..., reduced:]
    q_chunk, k_chunk = qb[start:stop], kb[start:stop]
    for d in range(1, qb.dim() - 1):
        local_products_into(grad_qb[start:stop], grad_e[d], k_chunk, d, transpose=False, accumulate=True)
        local_products_into(grad_kb[start:stop], grad_e[d], q_chunk, d, transpose=True, accumulate=True)
    add_bmm(global_lines(grad_qb, start, stop), grad_e[0], global_lines(kb))
    add_bmm(global_lines(grad_kb), grad_e[0].transpose(1, 2), global_lines(qb, start, stop))


# ----------------------------------------------------------------------------------------------------------
# portable path


def _portable_forward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    num_axes: int,
    proj_weight: Tensor | None,
    proj_bias: Tensor | None,
    gamma: Tensor | None,
    residual: Tensor | None,
) -> Tensor:
    """The same maths as the fast path, in plain differentiable ops; channels-first in and out.

    Dims are spelled as non-negative indices: some ONNX exporters emit invalid Transpose perms for negative
    ones.
    """
    last = num_axes + 1  # index of the channel dim in (B, *S, C), and of the last dim of a (B, *S, L) tensor
    qs = q.movedim(1, last).to(_softmax_dtype(q.dtype))  # (B, *S, C')
    ks = k.movedim(1, last).to(qs.dtype)
    vs = v.movedim(1, last)  # (B, *S, C)
    energies = []
    row_max = None
    for d in range(num_axes):
        axis = 1 + d
        q_lines = qs.movedim(axis, last - 1)  # (B, *others, L, C')
        k_lines = ks.movedim(axis, last - 1)
        energy = q_lines @ k_lines.transpose(last - 1, last)  # (B, *others, L, L)
        if d != num_axes - 1:
            index = torch.arange(energy.shape[last], device=energy.device)
            energy = energy.masked_fill(index[:, None] == index[None, :], float("-inf"))
        energies.append(energy)
        line_max = energy.detach().amax(last).movedim(last - 1, axis)  # (B, *S)
        row_max = line_max if row_max is None else torch.maximum(row_max, line_max)
    assert row_max is not None

    # per-position (B, *S) tensors seen along the lines of axis d: (B, *others, L, 1)
    def along(t: Tensor, d: int) -> Tensor:
        return t.movedim(1 + d, last - 1).unsqueeze(last)

    exps = [torch.exp(e - along(row_max, d)) for d, e in enumerate(energies)]
    total = sum(p.sum(last).movedim(last - 1, 1 + d) for d, p in enumerate(exps))
    out = 0
    for d, p in enumerate(exps):
        weight = (p / along(total, d)).to(v.dtype)
        out = out + (weight @ vs.movedim(1 + d, last - 1)).movedim(last - 1, 1 + d)  # (B, *S, C)
    if proj_weight is not None:
        out = F.linear(out, proj_weight, proj_bias)
    if gamma is not None:
        out = gamma * out
    if residual is not None:
        out = residual.movedim(1, last) + out
    return out.movedim(last, 1)


# ----------------------------------------------------------------------------------------------------------
# dispatch


def use_portable_path() -> bool:
    """True while tracing, scripting, compiling or exporting, where the custom autograd Function cannot go."""
    return bool(
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.onnx.is_in_onnx_export()
        or torch.compiler.is_compiling()
    )


def _autocast_inputs(*tensors: Tensor | None) -> tuple[Tensor | None, ...]:
    """Cast to the active autocast dtype (one cast per distinct tensor), as autocast would for a matmul."""
    device_type = next(t for t in tensors if t is not None).device.type
    dtype = torch.get_autocast_dtype(device_type)
    casts: dict[int, Tensor] = {}
    for t in tensors:
        if t is not None and id(t) not in casts:
            casts[id(t)] = t.to(dtype)
    return tuple(None if t is None else casts[id(t)] for t in tensors)


def autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type``; False for devices without autocast, such as "meta"."""
    return torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)


def _choose_path(path: str, value: Tensor) -> str:
    if path != "auto":
        return path
    if use_portable_path():  # checked first: no size inspection while tracing
        return "portable"
    return "portable" if value[0].numel() < SMALL_PROBLEM_ELEMENTS else "fast"


def criss_cross(q: Tensor, k: Tensor, v: Tensor, num_axes: int, *, path: str = "auto") -> Tensor:
    """CrissCrossAttention(q, k, v): q, k (B, C', *S), v (B, C, *S) -> (B, C, *S), channels-last memory.

    Inputs are assumed validated. Under autocast they are cast to the autocast dtype; energies and softmax
    are always float32 (float64 for float64 inputs). ``path``: "auto", "fast" or "portable" (tests use the
    last two to compare both with an oracle).
    """
    device_type = v.device.type
    if autocast_enabled(device_type):
        q, k, v = _autocast_inputs(q, k, v)
        with torch.autocast(device_type, enabled=False):
            return criss_cross(q, k, v, num_axes, path=path)
    if _choose_path(path, v) == "portable":
        return _portable_forward(q, k, v, num_axes, None, None, None, None)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return _CrissCrossFunction.apply(q, k, v, num_axes)
    return _fast_forward(q, k, v, num_axes, None, None, None, None)[0]


def cca_block(
    x: Tensor,
    num_axes: int,
    qk_weight: Tensor,
    qk_bias: Tensor,
    value_weight: Tensor,
    value_bias: Tensor,
    gamma: Tensor,
    *,
    path: str = "auto",
) -> Tensor:
    """One CCA block: y = x + gamma * (W_v (A x) + b_v), with q/k = W_qk x + b_qk (1x1 projections).

    x: (B, C, *S); qk_weight: (2C', C) (query rows, then key rows); value_weight: (C, C). Returns
    (B, C, *S) in channels-last memory. Same conventions as :func:`criss_cross`.
    """
    device_type = x.device.type
    params = (qk_weight, qk_bias, value_weight, value_bias, gamma)
    if autocast_enabled(device_type):
        x, *params = _autocast_inputs(x, *params)
        with torch.autocast(device_type, enabled=False):
            return cca_block(x, num_axes, *params, path=path)
    qk_weight, qk_bias, value_weight, value_bias, gamma = params
    if _choose_path(path, x) == "portable":
        conv = F.conv2d if num_axes == 2 else F.conv3d
        qk = conv(x, qk_weight.reshape(*qk_weight.shape, *[1] * num_axes), qk_bias)  # (B, 2C', *S)
        reduced = qk.shape[1] // 2
        q, k = qk[:, :reduced], qk[:, reduced:]  # slices, not chunk: ONNX opset 17 has no Split(num_outputs)
        return _portable_forward(q, k, x, num_axes, value_weight, value_bias, gamma, x)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, *params)):
        return _CCABlockFunction.apply(x, num_axes, *params)
    return _fast_forward(None, None, x, num_axes, value_weight, value_bias, gamma, x, qk_weight, qk_bias)[0]
