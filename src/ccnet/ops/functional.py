"""Functional criss-cross attention (2-D and 3-D) with input validation."""

from __future__ import annotations

from torch import Tensor

from ccnet.ops.dispatch import autocast_enabled, criss_cross

_LAYOUTS = {2: "(B, C, H, W)", 3: "(B, C, T, H, W)"}


def format_shape(t: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def check_attention_inputs(op: str, query: Tensor, key: Tensor, value: Tensor, num_axes: int) -> None:
    """Raise ValueError naming the shapes/dtypes received when q, k, v cannot go through the attention."""
    layout = _LAYOUTS[num_axes]
    named = {"query": query, "key": key, "value": value}
    for name, t in named.items():
        if not isinstance(t, Tensor):
            raise ValueError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != num_axes + 2:
            raise ValueError(
                f"{op}: {name} must have {num_axes + 2} dims {layout}, got shape {format_shape(t)}"
            )
        if t.numel() == 0:
            raise ValueError(f"{op}: {name} has an empty dimension, got shape {format_shape(t)}")
        if not t.is_floating_point():
            raise ValueError(f"{op}: {name} must be a floating-point tensor, got {t.dtype}")
    shapes = f"query {format_shape(query)}, key {format_shape(key)}, value {format_shape(value)}"
    if query.shape != key.shape:
        raise ValueError(f"{op}: query and key must have the same shape, got {shapes}")
    if value.shape[0] != query.shape[0] or value.shape[2:] != query.shape[2:]:
        raise ValueError(f"{op}: value must share batch and spatial sizes with query/key, got {shapes}")
    if not (query.device == key.device == value.device):
        raise ValueError(
            f"{op}: query, key and value must be on one device, got {shapes} on "
            f"{query.device}, {key.device}, {value.device}"
        )
    if not autocast_enabled(value.device.type) and not (query.dtype == key.dtype == value.dtype):
        raise ValueError(
            f"{op}: query, key and value must share one dtype, got {query.dtype}, {key.dtype}, "
            f"{value.dtype} for {shapes}"
        )


def criss_cross_attention(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Criss-cross attention over a 2-D grid.

    Every pixel u = (h, w) attends once to each of the H + W - 1 pixels of its row and column, with one
    softmax over all of them: ``out_u = sum_i softmax_i(<query_u, key_i>) value_i``.

    Args:
        query: (B, C', H, W) queries.
        key: (B, C', H, W) keys.
        value: (B, C, H, W) values.

    Returns:
        (B, C, H, W) tensor (channels-last memory) of value's dtype; under autocast, of the autocast dtype.
        The softmax always runs in float32.
    """
    check_attention_inputs("criss_cross_attention", query, key, value, 2)
    return criss_cross(query, key, value, 2)


def criss_cross_attention_3d(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Criss-cross attention over a (T, H, W) grid (video).

    Every position (t, h, w) attends once to each of the T + H + W - 2 positions of its time line, row and
    column, with one softmax over all of them.

    Args:
        query: (B, C', T, H, W) queries.
        key: (B, C', T, H, W) keys.
        value: (B, C, T, H, W) values.

    Returns:
        (B, C, T, H, W) tensor (channels-last memory), dtype as for :func:`criss_cross_attention`.
    """
    check_attention_inputs("criss_cross_attention_3d", query, key, value, 3)
    return criss_cross(query, key, value, 3)
