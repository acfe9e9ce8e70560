"""The criss-cross attention kernel shared by the 2-D and 3-D ops and modules.

Semantics (N = 2 or 3 grid axes): position u attends once to every position that differs from u in at most one
grid coordinate (its row and column; in 3-D also its time line): H + W - 1 positions in 2-D, T + H + W - 2 in
3-D, with one softmax over all of them. The energy is <query_u, key_i>; the output is the weighted sum of
values. ``u`` itself lies on every line; it is kept in the last axis and masked (-inf) in the others.

Two implementations of the same maths:

* the fast path (eager): a custom autograd Function working on channels-last tensors, so that every line is
  a matrix with unit channel stride and batched matmuls run without permute copies; the softmax is joint
  across axes without concatenation, in place; backward recomputes what it can instead of saving it.
  It can also fold the value projection, the ``gamma`` scale and the residual of the CCA module into one
  step (``y = residual + gamma * (W (A x) + b)``): projecting after aggregation is the same linear map as
  aggregating projected values, because every row of A sums to one, and then nothing of size (B, C, H, W)
  needs saving besides the block input, which is alive anyway.
* the portable path: the same maths in plain differentiable tensor ops, with no shape-dependent Python loop,
  used when tracing, compiling or exporting (TorchScript, ``torch.compile``, ONNX).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ccnet.ops._lines import (
    aggregate_into,
    aggregate_transposed_into,
    grid_view,
    line_batches,
    line_energies,
    weight_batches,
)


def _softmax_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half types (and float32), float64 stays float64."""
    return torch.promote_types(dtype, torch.float32)


def _axis_order(num_axes: int) -> list[int]:
    # The last axis first: its lines are contiguous, so its products write their outputs in place.
    return [num_axes - 1, *range(num_axes - 1)]


def _pixel_major(t: Tensor) -> Tensor:
    """(B, C, *S) -> contiguous (B, *S, C); free for channels-last inputs."""
    return t.movedim(1, -1).contiguous()


def _channels_first(t: Tensor) -> Tensor:
    """Contiguous (B, *S, C) -> (B, C, *S) view with channels-last strides."""
    return t.movedim(-1, 1)


# ----------------------------------------------------------------------------------------------------------
# fast path building blocks (pixel-major tensors, no autograd)


def attention_weights(q: Tensor, k: Tensor, num_axes: int) -> list[Tensor]:
    """Softmax weights of every axis, float32, as a list indexed by axis of (P, Q, L, L) tensors.

    q, k: pixel-major (B, *S, C'). The softmax is joint over all axes of a position.
    """
    q = q.to(_softmax_dtype(q.dtype))
    k = k.to(q.dtype)
    row_max = q.new_empty(q.shape[:-1])  # (B, *S)
    energies: dict[int, Tensor] = {}
    for i, d in enumerate(_axis_order(num_axes)):
        energy = line_energies(q, k, d, num_axes)  # (P, Q, L, L)
        if d != num_axes - 1:
            energy.diagonal(dim1=-2, dim2=-1).fill_(float("-inf"))
        line_max = energy.amax(-1)
        grid = grid_view(row_max, d, num_axes)
        if i == 0:
            grid.copy_(line_max)
        else:
            torch.maximum(grid, line_max, out=grid)
        energies[d] = energy
    weights = [energies[d] for d in range(num_axes)]
    total = torch.zeros_like(row_max)
    for d, energy in enumerate(weights):
        energy.sub_(grid_view(row_max, d, num_axes).unsqueeze(-1)).exp_()
        grid_view(total, d, num_axes).add_(energy.sum(-1))
    total.reciprocal_()
    for d, energy in enumerate(weights):
        energy.mul_(grid_view(total, d, num_axes).unsqueeze(-1))
    return weights


def aggregate(weights: list[Tensor], v: Tensor, num_axes: int) -> Tensor:
    """out_u = sum over the criss-cross set of u of A(u, i) v_i; v pixel-major (B, *S, C) -> same shape."""
    out = torch.empty_like(v)
    for i, d in enumerate(_axis_order(num_axes)):
        aggregate_into(out, weights[d].to(v.dtype), v, d, num_axes, accumulate=i > 0)
    return out


def _pointwise(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """A 1x1 convolution of pixel-major x (B, *S, C_in) with weight (C_out, C_in): (B, *S, C_out).

    Runs as a channels-last conv2d, which on CPU uses oneDNN (about twice as fast here as a plain matmul).
    """
    batch, channels = x.shape[0], x.shape[-1]
    x4 = x.view(batch, -1, 1, channels).permute(0, 3, 1, 2)  # (B, C_in, N, 1), channels-last memory
    y4 = F.conv2d(x4, weight.reshape(weight.shape[0], channels, 1, 1), bias)  # (B, C_out, N, 1)
    return y4.permute(0, 2, 3, 1).reshape(*x.shape[:-1], weight.shape[0])


def _fast_forward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    num_axes: int,
    proj_weight: Tensor | None,
    proj_bias: Tensor | None,
    gamma: Tensor | None,
    residual: Tensor | None,
) -> tuple[Tensor, list[Tensor]]:
    """Pixel-major in, pixel-major out: y = residual + gamma * proj(A v) (each part optional)."""
    weights = attention_weights(q, k, num_axes)
    out = aggregate(weights, v, num_axes)
    if proj_weight is not None:
        out = _pointwise(out, proj_weight, proj_bias)
    if gamma is not None:
        out.mul_(gamma)
    if residual is not None:
        out.add_(residual)
    return out, weights


class _CrissCrossFunction(torch.autograd.Function):
    """Autograd for :func:`_fast_forward`. Saves q, k, v (the block input for the module) and the weights."""

    @staticmethod
    def forward(ctx, q, k, v, num_axes, proj_weight, proj_bias, gamma, residual):  # type: ignore[override]
        qp, kp, vp = _pixel_major(q), _pixel_major(k), _pixel_major(v)
        rp = None if residual is None else _pixel_major(residual)
        out, weights = _fast_forward(qp, kp, vp, num_axes, proj_weight, proj_bias, gamma, rp)
        ctx.num_axes = num_axes
        ctx.has_bias = proj_bias is not None
        ctx.has_residual = residual is not None
        ctx.save_for_backward(qp, kp, vp, proj_weight, proj_bias, gamma, *weights)
        return _channels_first(out)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        qp, kp, vp, proj_weight, proj_bias, gamma, *weights = ctx.saved_tensors
        num_axes = ctx.num_axes
        need_q, need_k, need_v, _, need_w, need_b, need_gamma, _ = ctx.needs_input_grad
        g = _pixel_major(grad_out).to(vp.dtype)  # (B, *S, C_out)
        grad_w = grad_b = grad_gamma = None
        if proj_weight is not None:
            # y = r + gamma (W z + b) with z = A v, recomputed rather than saved.
            z = aggregate(weights, vp, num_axes)
            h = _pointwise(g, proj_weight.t(), None)  # W^T dy
            scale = 1.0 if gamma is None else gamma
            if need_gamma:
                grad_gamma = (z * h).sum()
                if proj_bias is not None:
                    grad_gamma = grad_gamma + (g.flatten(0, -2).sum(0) * proj_bias).sum()
            if need_w:
                grad_w = (g.flatten(0, -2).t() @ z.flatten(0, -2)).mul_(scale).view_as(proj_weight)
            if need_b:
                grad_b = g.flatten(0, -2).sum(0) * scale
            del z
            g = h.mul_(scale)  # gradient w.r.t. z
            scale = None
        else:
            # y = r + gamma z: the attention backward below works on dy and scales at the end.
            scale = gamma
        grad_q, grad_k, grad_v, grad_gamma_attn = _attention_backward(
            g, qp, kp, vp, weights, num_axes, scale, need_q or need_k, need_v
        )
        if grad_gamma is None and need_gamma:
            grad_gamma = grad_gamma_attn
        grad_r = grad_out if ctx.has_residual else None
        return (
            grad_q if need_q else None,
            grad_k if need_k else None,
            grad_v,
            None,
            grad_w,
            grad_b,
            grad_gamma,
            grad_r,
        )


def _attention_backward(
    g: Tensor,
    qp: Tensor,
    kp: Tensor,
    vp: Tensor,
    weights: list[Tensor],
    num_axes: int,
    scale: Tensor | None,
    need_qk: bool,
    need_v: bool,
) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    """Gradients of out = scale * (A v) w.r.t. q, k, v (channels-first views) and scale (if given).

    g: pixel-major gradient of ``A v`` times nothing, i.e. of the unscaled output when ``scale`` is given.
    """
    grad_v = None
    if need_v:
        grad_v = torch.empty_like(vp)
        for i, d in enumerate(_axis_order(num_axes)):
            aggregate_transposed_into(grad_v, weights[d].to(vp.dtype), g, d, num_axes, accumulate=i > 0)
        if scale is not None:
            grad_v.mul_(scale)
        grad_v = _channels_first(grad_v)
    if not need_qk and scale is None:
        return None, None, grad_v, None
    # dA[i, j] = <g_i, v_j>; softmax backward: dE = A * (dA - sum_j A dA), joint over the axes.
    grid_shape = vp.shape[:-1]
    softmax_dtype = weights[0].dtype
    weighted = torch.zeros(grid_shape, dtype=softmax_dtype, device=vp.device)
    grad_energies = []
    for d in range(num_axes):
        grad_a = torch.empty_like(weights[d], dtype=vp.dtype)
        for gb, vb, ab in zip(
            line_batches(g, d, num_axes), line_batches(vp, d, num_axes), weight_batches(grad_a)
        ):
            torch.bmm(gb, vb.transpose(1, 2), out=ab)
        grad_a = grad_a.to(softmax_dtype)
        grid_view(weighted, d, num_axes).add_(torch.linalg.vecdot(weights[d], grad_a))
        grad_energies.append(grad_a)
    grad_scale = weighted.sum() if scale is not None else None
    if not need_qk:
        return None, None, grad_v, grad_scale
    if scale is not None:
        weighted.mul_(scale)
    for d in range(num_axes):
        grad_a = grad_energies[d]
        if scale is not None:
            grad_a.mul_(scale)
        grad_a.sub_(grid_view(weighted, d, num_axes).unsqueeze(-1)).mul_(weights[d])
    q32, k32 = qp.to(softmax_dtype), kp.to(softmax_dtype)
    grad_q = torch.empty_like(q32)
    grad_k = torch.empty_like(k32)
    for i, d in enumerate(_axis_order(num_axes)):
        aggregate_into(grad_q, grad_energies[d], k32, d, num_axes, accumulate=i > 0)
        aggregate_transposed_into(grad_k, grad_energies[d], q32, d, num_axes, accumulate=i > 0)
    return (
        _channels_first(grad_q.to(qp.dtype)),
        _channels_first(grad_k.to(kp.dtype)),
        grad_v,
        grad_scale,
    )


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


def criss_cross(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    num_axes: int,
    *,
    proj_weight: Tensor | None = None,
    proj_bias: Tensor | None = None,
    gamma: Tensor | None = None,
    residual: Tensor | None = None,
    path: str = "auto",
) -> Tensor:
    """y = residual + gamma * proj(CrissCrossAttention(q, k, v)), each of residual/gamma/proj optional.

    q, k: (B, C', *S); v: (B, C_in, *S); proj_weight: (C_out, C_in); residual: (B, C_out, *S).
    Returns (B, C_out, *S) in channels-last memory. Inputs are assumed validated. Under autocast the inputs
    are cast to the autocast dtype; energies and softmax are always float32. ``path``: "auto", "fast" or
    "portable" (tests use the last two to compare both against an oracle).
    """
    device_type = v.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        q, k, v, proj_weight, proj_bias, gamma, residual = (
            None if t is None else t.to(dtype) for t in (q, k, v, proj_weight, proj_bias, gamma, residual)
        )
        with torch.autocast(device_type, enabled=False):
            return criss_cross(
                q,
                k,
                v,
                num_axes,
                proj_weight=proj_weight,
                proj_bias=proj_bias,
                gamma=gamma,
                residual=residual,
                path=path,
            )
    if path == "portable" or (path == "auto" and use_portable_path()):
        return _portable_forward(q, k, v, num_axes, proj_weight, proj_bias, gamma, residual)
    inputs = (q, k, v, proj_weight, proj_bias, gamma, residual)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        return _CrissCrossFunction.apply(q, k, v, num_axes, proj_weight, proj_bias, gamma, residual)
    out, _ = _fast_forward(
        _pixel_major(q),
        _pixel_major(k),
        _pixel_major(v),
        num_axes,
        proj_weight,
        proj_bias,
        gamma,
        None if residual is None else _pixel_major(residual),
    )
    return _channels_first(out)
