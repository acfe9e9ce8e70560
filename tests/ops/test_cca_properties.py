"""Property-based tests: random shapes and dtypes against the dense oracle."""

from __future__ import annotations

from unittest import mock

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ccnet.ops.dispatch import cca_block, criss_cross
from tests.oracles import dense_criss_cross

# Tolerances per input dtype, relative to a float64 oracle on O(1) data.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-5, torch.bfloat16: 0.1, torch.float16: 0.02}

grids = st.one_of(
    st.tuples(st.integers(1, 7), st.integers(1, 7)),
    st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 5)),
)


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 3),
    c_qk=st.integers(1, 4),
    c_v=st.integers(1, 5),
    grid=grids,
    dtype=st.sampled_from(list(TOLERANCE)),
    path=st.sampled_from(["fast", "portable"]),
    chunk_elements=st.sampled_from([1, 50, 1 << 21]),  # rows of axis 0 per fast-path chunk: 1, a few, all
    channels_last=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_shapes_and_dtypes(batch, c_qk, c_v, grid, dtype, path, chunk_elements, channels_last, seed):
    generator = torch.Generator().manual_seed(seed)
    q64 = torch.randn(batch, c_qk, *grid, generator=generator, dtype=torch.float64)
    k64 = torch.randn(batch, c_qk, *grid, generator=generator, dtype=torch.float64)
    v64 = torch.randn(batch, c_v, *grid, generator=generator, dtype=torch.float64)
    q, k, v = (t.to(dtype) for t in (q64, k64, v64))
    if channels_last:
        fmt = torch.channels_last if len(grid) == 2 else torch.channels_last_3d
        q, k, v = (t.contiguous(memory_format=fmt) for t in (q, k, v))
    q.requires_grad_()
    v.requires_grad_()
    with mock.patch("ccnet.ops.chunks.CHUNK_ELEMENTS", chunk_elements):
        out = criss_cross(q, k, v, len(grid), path=path)
    assert out.dtype == dtype and out.shape == v.shape
    # The oracle sees the same rounded inputs, so only the op's own rounding is measured.
    q_ref, k_ref, v_ref = (t.detach().double().requires_grad_() for t in (q, k, v))
    expected = dense_criss_cross(q_ref, k_ref, v_ref)
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(out.double(), expected, atol=tol, rtol=tol)
    upstream = torch.randn(expected.shape, generator=generator, dtype=torch.float64)
    with mock.patch("ccnet.ops.chunks.CHUNK_ELEMENTS", chunk_elements):
        grad_q, grad_v = torch.autograd.grad(out, (q, v), upstream.to(dtype))
    want_q, want_v = torch.autograd.grad(expected, (q_ref, v_ref), upstream)
    assert torch.isfinite(grad_q).all() and torch.isfinite(grad_v).all()
    torch.testing.assert_close(grad_v.double(), want_v, atol=tol, rtol=tol)
    torch.testing.assert_close(grad_q.double(), want_q, atol=4 * tol, rtol=4 * tol)


@settings(max_examples=30, deadline=None)
@given(
    batch=st.integers(1, 2),
    channels=st.integers(1, 6),
    reduced=st.integers(1, 3),
    grid=grids,
    dtype=st.sampled_from([torch.float64, torch.float32]),
    onednn=st.booleans(),
    chunk_elements=st.sampled_from([1, 50, 1 << 21]),
    seed=st.integers(0, 2**16),
)
def test_random_fused_blocks(batch, channels, reduced, grid, dtype, onednn, chunk_elements, seed):
    """The fused CCA block (fast path) with either projection kernel against the dense oracle."""
    onednn = onednn and dtype == torch.float32 and torch.backends.mkldnn.is_available()
    generator = torch.Generator().manual_seed(seed)

    def draw(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    x64 = draw(batch, channels, *grid)
    params64 = [draw(2 * reduced, channels), draw(2 * reduced), draw(channels, channels), draw(channels)]
    params64.append(torch.tensor(0.8, dtype=torch.float64))
    x = x64.to(dtype).requires_grad_()
    params = [p.to(dtype).requires_grad_() for p in params64]
    with (
        mock.patch("ccnet.ops.chunks.CHUNK_ELEMENTS", chunk_elements),
        mock.patch("ccnet.ops.projection.use_onednn", lambda t: onednn),
    ):
        y = cca_block(x, len(grid), *params, path="fast")
        upstream = torch.randn(y.shape, generator=generator, dtype=torch.float64)
        grads = torch.autograd.grad(y, [x, *params], upstream.to(dtype))
    x_ref = x64.clone().requires_grad_()
    p_ref = [p.clone().requires_grad_() for p in params64]
    q_w, q_b = p_ref[0][:reduced], p_ref[1][:reduced]
    k_w, k_b = p_ref[0][reduced:], p_ref[1][reduced:]
    kernel = (1,) * len(grid)
    conv = torch.nn.functional.conv2d if len(grid) == 2 else torch.nn.functional.conv3d
    q, k, v = (conv(x_ref, w.view(*w.shape, *kernel), b) for w, b in ((q_w, q_b), (k_w, k_b), p_ref[2:4]))
    expected = p_ref[4] * dense_criss_cross(q, k, v) + x_ref
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(y.double(), expected, atol=tol, rtol=tol)
    expected_grads = torch.autograd.grad(expected, [x_ref, *p_ref], upstream)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got.double(), want, atol=10 * tol, rtol=10 * tol)
