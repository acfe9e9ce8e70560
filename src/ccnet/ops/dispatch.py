"""Entry points of the attention op: autocast handling and the choice between the two implementations.

* the reference path (:mod:`ccnet.ops.reference`): plain differentiable ops, used when tracing, scripting,
  compiling or exporting, while recording the weights (:mod:`ccnet.ops.recording`), and for small inputs
  (``SMALL_PROBLEM_ELEMENTS``), where it is faster;
* the fast path (:mod:`ccnet.ops.autograd` when a gradient is needed, else
  :func:`~ccnet.ops.fast_forward.fast_forward` alone): eager, chunked, with a hand-written backward.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ccnet.ops.autograd import CCABlockFunction, CrissCrossFunction
from ccnet.ops.fast_forward import fast_forward
from ccnet.ops.recording import recording_attention
from ccnet.ops.reference import cca_block_reference, criss_cross_reference

# Below this many elements per batch element, the per-chunk Python work of the fast path costs more than
# it saves: the reference path is faster there.
SMALL_PROBLEM_ELEMENTS = 1 << 16


def use_portable_path() -> bool:
    """True while tracing, scripting, compiling or exporting, where the custom autograd Function cannot go."""
    return bool(
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.onnx.is_in_onnx_export()
        or torch.compiler.is_compiling()
    )


def autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type``; False for devices without autocast, such as "meta"."""
    return torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)


def _autocast_inputs(*tensors: Tensor | None) -> tuple[Tensor | None, ...]:
    """Cast to the active autocast dtype (one cast per distinct tensor), as autocast would for a matmul."""
    device_type = next(t for t in tensors if t is not None).device.type
    dtype = torch.get_autocast_dtype(device_type)
    casts: dict[int, Tensor] = {}
    for t in tensors:
        if t is not None and id(t) not in casts:
            casts[id(t)] = t.to(dtype)
    return tuple(None if t is None else casts[id(t)] for t in tensors)


def _choose_path(path: str, value: Tensor) -> str:
    """The path to run: for ``path`` "auto", "portable" (the reference path) or "fast"; else ``path``."""
    if path != "auto":
        return path
    if use_portable_path() or recording_attention():  # checked first: no size inspection while tracing
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
        return criss_cross_reference(q, k, v, num_axes)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return CrissCrossFunction.apply(q, k, v)
    return fast_forward(v, q=q, k=k).out


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
    keep_aggregate: bool = True,
) -> Tensor:
    """One CCA block: y = x + gamma * (W_v (A x) + b_v), with q/k = W_qk x + b_qk (1x1 projections).

    x: (B, C, *S); qk_weight: (2C', C) (query rows, then key rows); value_weight: (C, C). Returns
    (B, C, *S) in channels-last memory. Same conventions as :func:`criss_cross`. ``keep_aggregate=False``:
    the fast path's backward recomputes the aggregate A x instead of keeping it from the forward (a lower
    peak where later work runs between this block's forward and backward, at one aggregation pass).
    """
    device_type = x.device.type
    params = (qk_weight, qk_bias, value_weight, value_bias, gamma)
    if autocast_enabled(device_type):
        x, *params = _autocast_inputs(x, *params)
        with torch.autocast(device_type, enabled=False):
            return cca_block(x, num_axes, *params, path=path, keep_aggregate=keep_aggregate)
    qk_weight, qk_bias, value_weight, value_bias, gamma = params
    if _choose_path(path, x) == "portable":
        return cca_block_reference(x, num_axes, qk_weight, qk_bias, value_weight, value_bias, gamma)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, *params)):
        return CCABlockFunction.apply(x, *params, keep_aggregate)
    return fast_forward(
        x,
        qk_weight=qk_weight,
        qk_bias=qk_bias,
        value_weight=value_weight,
        value_bias=value_bias,
        gamma=gamma,
        residual=x,
    ).out
