"""Criss-cross attention (2-D and 3-D) against independent oracles: a dense masked attention and gradcheck."""

from __future__ import annotations

import pytest
import torch
from torch.utils.checkpoint import checkpoint

import ccnet
from ccnet.ops import chunks, projection
from ccnet.ops.dispatch import cca_block, criss_cross
from ccnet.ops.layout import pixel_major
from tests.oracles import criss_cross_mask, dense_cca_block, dense_criss_cross


@pytest.fixture(params=["fast", "fast-chunked", "portable"])
def path(request, monkeypatch):
    """The implementation under test, also for the modules' automatic choice.

    "fast-chunked" is the fast path with one row of axis 0 per chunk, to cross chunk boundaries.
    """
    if request.param == "portable":
        monkeypatch.setattr("ccnet.ops.dispatch.use_portable_path", lambda: True)
        return "portable"
    monkeypatch.setattr("ccnet.ops.dispatch.SMALL_PROBLEM_ELEMENTS", 0)
    if request.param == "fast-chunked":
        monkeypatch.setattr("ccnet.ops.chunks.CHUNK_ELEMENTS", 1)
    return "fast"


# (B, C', C, *grid): 1x1, 1xW, Hx1, odd, non-square, batch 3
SHAPES_2D = [
    (1, 2, 3, 1, 1),
    (2, 2, 3, 1, 6),
    (2, 3, 2, 5, 1),
    (1, 4, 5, 7, 7),
    (3, 3, 4, 5, 8),
    (2, 1, 3, 9, 4),
]
SHAPES_3D = [
    (1, 2, 3, 1, 1, 1),
    (2, 2, 3, 1, 4, 5),
    (1, 3, 2, 4, 1, 3),
    (1, 2, 3, 3, 4, 1),
    (3, 2, 4, 3, 5, 4),
]


def _random_qkv(shape, dtype=torch.float64, scale=1.5):
    batch, c_qk, c_v, *grid = shape
    q = (scale * torch.randn(batch, c_qk, *grid, dtype=dtype)).requires_grad_()
    k = (scale * torch.randn(batch, c_qk, *grid, dtype=dtype)).requires_grad_()
    v = torch.randn(batch, c_v, *grid, dtype=dtype).requires_grad_()
    return q, k, v


def test_mask_counts_each_position_once():
    # The oracle's own premise: H + W - 1 positions in 2-D, T + H + W - 2 in 3-D.
    assert criss_cross_mask((5, 7)).sum(1).tolist() == [5 + 7 - 1] * 35
    assert criss_cross_mask((3, 4, 6)).sum(1).tolist() == [3 + 4 + 6 - 2] * 72


@pytest.mark.parametrize("shape", SHAPES_2D + SHAPES_3D, ids=str)
def test_matches_dense_oracle_forward_and_backward(shape, path):
    torch.manual_seed(0)
    q, k, v = _random_qkv(shape)
    num_axes = len(shape) - 3
    out = criss_cross(q, k, v, num_axes, path=path)
    expected = dense_criss_cross(q, k, v)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    upstream = torch.randn_like(expected)
    grads = torch.autograd.grad(out, (q, k, v), upstream)
    expected_grads = torch.autograd.grad(expected, (q, k, v), upstream)
    for name, got, want in zip("qkv", grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9, msg=f"grad {name}")


def test_public_functionals():
    torch.manual_seed(1)
    q, k, v = _random_qkv((2, 3, 4, 5, 6))
    torch.testing.assert_close(ccnet.criss_cross_attention(q, k, v), dense_criss_cross(q, k, v))
    q, k, v = _random_qkv((2, 3, 4, 2, 5, 3))
    torch.testing.assert_close(ccnet.criss_cross_attention_3d(q, k, v), dense_criss_cross(q, k, v))


def _module(cls, channels=16, gamma=0.8):
    torch.manual_seed(2)
    module = cls(channels).double()
    with torch.no_grad():
        module.gamma.fill_(gamma)
        for conv in (module.query_conv, module.key_conv, module.value_conv):
            conv.bias.normal_()
    return module


# modules and grids of the oracle tests: 1x1, a single row, a single column, odd sizes, 3-D with T=1 and T>1
BLOCK_GRIDS = [
    (ccnet.CrissCrossAttention, (1, 1)),
    (ccnet.CrissCrossAttention, (1, 7)),
    (ccnet.CrissCrossAttention, (6, 1)),
    (ccnet.CrissCrossAttention, (5, 8)),
    (ccnet.CrissCrossAttention3d, (1, 4, 5)),
    (ccnet.CrissCrossAttention3d, (3, 4, 2)),
]


@pytest.mark.parametrize(
    ("cls", "grid"),
    BLOCK_GRIDS,
    ids=str,
)
def test_module_matches_paper_order_oracle(cls, grid, path):
    """The module projects values after aggregating; the oracle projects first, as the paper writes it."""
    module = _module(cls)
    x = torch.randn(3, 16, *grid, dtype=torch.float64, requires_grad=True)
    y = module(x)
    expected = dense_cca_block(x, module)
    torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-10)
    upstream = torch.randn_like(expected)
    inputs = [x, *module.parameters()]
    names = ["x"] + [n for n, _ in module.named_parameters()]
    grads = torch.autograd.grad(y, inputs, upstream)
    expected_grads = torch.autograd.grad(expected, inputs, upstream)
    for name, got, want in zip(names, grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9, msg=f"grad {name}")


@pytest.mark.parametrize("recurrence", [0, 1, 2, 3])
def test_recurrent_module_is_repeated_shared_block(recurrence, path):
    torch.manual_seed(3)
    rcca = ccnet.RecurrentCrissCrossAttention(16, recurrence=recurrence).double()
    with torch.no_grad():
        rcca.cca.gamma.fill_(-0.6)
    assert len(list(rcca.parameters())) == 7  # one shared block: 3 convs x (weight, bias) + gamma
    x = torch.randn(2, 16, 5, 4, dtype=torch.float64, requires_grad=True)
    expected = x
    for _ in range(recurrence):
        expected = dense_cca_block(expected, rcca.cca)
    y = rcca(x)
    torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-10)
    if recurrence:
        grads = torch.autograd.grad(y.square().sum(), [x, *rcca.parameters()])
        expected_grads = torch.autograd.grad(expected.square().sum(), [x, *rcca.parameters()])
        for got, want in zip(grads, expected_grads):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_gradcheck_functional_2d_and_3d(path):
    torch.manual_seed(4)
    for shape, num_axes in (((2, 2, 3, 3, 4), 2), ((1, 2, 2, 2, 3, 3), 3)):
        q, k, v = _random_qkv(shape)
        assert torch.autograd.gradcheck(
            lambda a, b, c, n=num_axes: criss_cross(a, b, c, n, path=path), (q, k, v)
        )


def test_gradcheck_portable_second_order():
    torch.manual_seed(4)
    q, k, v = _random_qkv((1, 2, 2, 3, 4))
    assert torch.autograd.gradgradcheck(lambda a, b, c: criss_cross(a, b, c, 2, path="portable"), (q, k, v))


def test_gradcheck_fused_block(path):
    """The module's fused step (projections, attention, gamma, residual) w.r.t. every input."""
    torch.manual_seed(5)
    for grid in ((3, 4), (2, 3, 3)):
        x = torch.randn(2, 3, *grid, dtype=torch.float64, requires_grad=True)
        qk_weight = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
        qk_bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
        value_weight = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
        value_bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
        gamma = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
        num_axes = len(grid)

        def block(*inputs, n=num_axes):
            return cca_block(inputs[0], n, *inputs[1:], path=path)

        assert torch.autograd.gradcheck(block, (x, qk_weight, qk_bias, value_weight, value_bias, gamma))


def _reach(recurrence: int, size=(6, 7)) -> torch.Tensor:
    """|d y[u] / d x[v]| summed over channels, for the centre-ish output pixel u."""
    torch.manual_seed(6)
    rcca = ccnet.RecurrentCrissCrossAttention(8, recurrence=recurrence, reduction=2).double()
    with torch.no_grad():
        rcca.cca.gamma.fill_(1.0)
    x = torch.randn(1, 8, *size, dtype=torch.float64, requires_grad=True)
    u = (2, 3)
    (grad,) = torch.autograd.grad(rcca(x)[0, :, u[0], u[1]].sum(), x)
    return grad.abs().sum(1)[0]


def test_reach_one_loop_is_a_cross_two_loops_the_whole_image(path):
    reach1 = _reach(1)
    cross = torch.zeros(6, 7, dtype=torch.bool)
    cross[2, :] = True
    cross[:, 3] = True
    assert (reach1[cross] > 1e-8).all()
    assert (reach1[~cross] == 0).all()
    assert (_reach(2) > 1e-8).all()


def _lowp_module(cls, grid):
    torch.manual_seed(7)
    module = cls(32)
    with torch.no_grad():
        module.gamma.fill_(1.0)
    x = torch.randn(2, 32, *grid)
    return module, x


# bf16 keeps 8 mantissa bits (relative step 2^-8 ~ 0.4%); outputs are O(1) after a few O(1)-sized sums.
LOWP_TOLERANCE = {torch.bfloat16: 0.1, torch.float16: 0.02}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    ("cls", "grid"),
    [
        (ccnet.CrissCrossAttention, (9, 11)),
        (ccnet.CrissCrossAttention, (1, 5)),
        (ccnet.CrissCrossAttention, (5, 1)),
        (ccnet.CrissCrossAttention3d, (1, 4, 5)),
        (ccnet.CrissCrossAttention3d, (3, 5, 4)),
    ],
    ids=str,
)
def test_autocast_agrees_with_float32(cls, grid, dtype, path):
    module, x = _lowp_module(cls, grid)
    x.requires_grad_()
    expected = module(x)
    (expected_grad,) = torch.autograd.grad(expected.sum(), x)
    with torch.autocast("cpu", dtype=dtype):
        y = module(x)
    assert y.dtype == dtype
    (grad,) = torch.autograd.grad(y.float().sum(), x)
    assert torch.isfinite(y).all() and torch.isfinite(grad).all()
    tol = LOWP_TOLERANCE[dtype]
    torch.testing.assert_close(y.float(), expected, atol=tol, rtol=tol)
    torch.testing.assert_close(grad, expected_grad, atol=tol, rtol=tol)


def test_large_energies_do_not_overflow_in_half_precision(path):
    # Energies above the float16 range (65504) must still give a finite softmax: it runs in float32.
    torch.manual_seed(8)
    q = torch.full((1, 4, 3, 5), 200.0)
    k = torch.full((1, 4, 3, 5), 200.0) + torch.randn(1, 4, 3, 5)
    v = torch.randn(1, 6, 3, 5)
    with torch.autocast("cpu", dtype=torch.float16):
        out = ccnet.criss_cross_attention(q, k, v)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(
        out.float(), dense_criss_cross(q.double(), k.double(), v.double()).float(), atol=0.02, rtol=0.02
    )


def test_channels_last_and_strided_inputs(path):
    torch.manual_seed(9)
    q, k, v = (t.detach() for t in _random_qkv((2, 3, 4, 6, 5)))
    expected = dense_criss_cross(q, k, v)
    cl = [t.contiguous(memory_format=torch.channels_last) for t in (q, k, v)]
    torch.testing.assert_close(ccnet.criss_cross_attention(*cl), expected)
    wide = torch.randn(2, 3, 6, 10, dtype=torch.float64)[..., ::2]  # non-contiguous view
    torch.testing.assert_close(ccnet.criss_cross_attention(wide, k, v), dense_criss_cross(wide, k, v))


@pytest.mark.parametrize("channels_last", [False, True], ids=["channels_first", "channels_last"])
def test_gradients_come_back_in_the_input_layout(channels_last, path):
    """The fast path gives a channels-first input a contiguous gradient and a channels-last input a
    channels-last one (autograd's choice on the portable path); all equal the oracle's (module and op)."""
    fast = path == "fast"
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    module = _module(ccnet.CrissCrossAttention)
    x = torch.randn(2, 16, 5, 7, dtype=torch.float64).contiguous(memory_format=fmt).requires_grad_()
    upstream = torch.randn(2, 16, 5, 7, dtype=torch.float64)
    (grad,) = torch.autograd.grad(module(x), x, upstream)
    x_ref = x.detach().clone().requires_grad_()
    (expected,) = torch.autograd.grad(dense_cca_block(x_ref, module), x_ref, upstream)
    assert grad.is_contiguous(memory_format=fmt) or not fast
    torch.testing.assert_close(grad, expected)

    qkv = _random_qkv((2, 3, 4, 6, 5))
    q, k, v = (t.detach().contiguous(memory_format=fmt).requires_grad_() for t in qkv)
    grads = torch.autograd.grad(ccnet.criss_cross_attention(q, k, v).sum(), (q, k, v))
    refs = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    expected_grads = torch.autograd.grad(dense_criss_cross(*refs).sum(), refs)
    for got, want in zip(grads, expected_grads):
        assert got.is_contiguous(memory_format=fmt) or not fast
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("cls", [ccnet.CrissCrossAttention, ccnet.CrissCrossAttention3d])
def test_backward_uses_what_forward_kept_and_recomputes_on_a_second_pass(cls, path, monkeypatch):
    """The fast path keeps the attention weights and the aggregate for backward and frees them as it goes:
    the first backward recomputes nothing, a second one through the same graph (retain_graph) recomputes,
    and both, like backward under activation checkpointing or saved-tensor hooks, equal the oracle's."""
    recomputed = []
    for name in ("attention_weights", "aggregate"):
        original = getattr(chunks, name)

        def spy(*args, _original=original, _name=name):
            recomputed.append(_name)
            return _original(*args)

        monkeypatch.setattr(chunks, name, spy)
    module = _module(cls)
    grid = (5, 7) if cls is ccnet.CrissCrossAttention else (3, 4, 5)
    x = torch.randn(2, 16, *grid, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 16, *grid, dtype=torch.float64)
    inputs = [x, *module.parameters()]
    expected = torch.autograd.grad(dense_cca_block(x, module), inputs, upstream)

    y = module(x)
    forward_calls = len(recomputed)
    assert forward_calls > 0 or path == "portable"
    runs = [torch.autograd.grad(y, inputs, upstream, retain_graph=True)]
    assert len(recomputed) == forward_calls  # nothing recomputed
    runs.append(torch.autograd.grad(y, inputs, upstream))
    assert len(recomputed) > forward_calls or path == "portable"
    runs.append(torch.autograd.grad(checkpoint(module, x, use_reentrant=False), inputs, upstream))
    with torch.autograd.graph.save_on_cpu():
        runs.append(torch.autograd.grad(module(x), inputs, upstream))
    for grads in runs:
        for got, want in zip(grads, expected):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)

    q, k, v = _random_qkv((2, 3, 4, *grid))
    out = criss_cross(q, k, v, len(grid), path=path)
    expected = torch.autograd.grad(dense_criss_cross(q, k, v), (q, k, v), upstream[:, :4])
    for _ in range(2):
        grads = torch.autograd.grad(out, (q, k, v), upstream[:, :4], retain_graph=True)
        for got, want in zip(grads, expected):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_inference_mode_and_no_grad_match_training_path(path):
    module = _module(ccnet.CrissCrossAttention)
    x = torch.randn(2, 16, 5, 7, dtype=torch.float64)
    expected = dense_cca_block(x, module)
    with torch.inference_mode():
        torch.testing.assert_close(module(x), expected)
    with torch.no_grad():
        torch.testing.assert_close(module(x), expected)


def test_deterministic(path):
    rcca = ccnet.RecurrentCrissCrossAttention(32)
    with torch.no_grad():
        rcca.cca.gamma.fill_(0.5)
    x = torch.randn(2, 32, 13, 17, requires_grad=True)
    runs = []
    for _ in range(2):
        y = rcca(x)
        (grad,) = torch.autograd.grad(y.square().sum(), x)
        runs.append((y.detach(), grad))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (((1, 2, 3), (1, 2, 3), (1, 4, 3)), r"query must have 4 dims \(B, C, H, W\), got shape \(1, 2, 3\)"),
        (
            ((1, 2, 3, 4), (1, 3, 3, 4), (1, 4, 3, 4)),
            r"same shape, got query \(1, 2, 3, 4\), key \(1, 3, 3, 4\)",
        ),
        (((1, 2, 3, 4), (1, 2, 3, 4), (1, 4, 3, 5)), r"value must share .* value \(1, 4, 3, 5\)"),
        (((2, 2, 3, 4), (2, 2, 3, 4), (1, 4, 3, 4)), r"value must share .* value \(1, 4, 3, 4\)"),
        (((1, 2, 0, 4), (1, 2, 0, 4), (1, 4, 0, 4)), r"empty dimension, got shape \(1, 2, 0, 4\)"),
    ],
)
def test_bad_shapes_are_named(args, message):
    tensors = [torch.randn(s) for s in args]
    with pytest.raises(ValueError, match=message):
        ccnet.criss_cross_attention(*tensors)


def test_bad_dtypes_and_module_inputs():
    q = torch.randn(1, 2, 3, 4)
    with pytest.raises(ValueError, match=r"share one dtype, got torch.float32, torch.float32, torch.float64"):
        ccnet.criss_cross_attention(q, q, torch.randn(1, 4, 3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"floating-point tensor, got torch.int64"):
        ccnet.criss_cross_attention(q, q, torch.ones(1, 4, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"must have 5 dims \(B, C, T, H, W\), got shape \(1, 2, 3, 4\)"):
        ccnet.criss_cross_attention_3d(q, q, q)
    with pytest.raises(ValueError, match=r"C=16, got shape \(1, 8, 4, 4\)"):
        ccnet.CrissCrossAttention(16)(torch.randn(1, 8, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\) with C=16, got shape \(1, 16, 4, 4\)"):
        ccnet.CrissCrossAttention3d(16)(torch.randn(1, 16, 4, 4))
    with pytest.raises(ValueError, match="in_channels=4, reduction=8"):
        ccnet.CrissCrossAttention(4)
    with pytest.raises(ValueError, match="recurrence must be >= 0, got -1"):
        ccnet.RecurrentCrissCrossAttention(16, recurrence=-1)


def test_fresh_module_is_identity_and_state_dict_names():
    rcca = ccnet.RecurrentCrissCrossAttention(16)
    x = torch.randn(1, 16, 4, 5)
    torch.testing.assert_close(rcca(x), x)
    assert set(rcca.state_dict()) == {
        "cca.query_conv.weight",
        "cca.query_conv.bias",
        "cca.key_conv.weight",
        "cca.key_conv.bias",
        "cca.value_conv.weight",
        "cca.value_conv.bias",
        "cca.gamma",
    }
    assert rcca.cca.query_conv.weight.shape == (2, 16, 1, 1) and rcca.cca.gamma.shape == ()


# ----------------------------------------------------------------------------------------------------------
# per-device choice of the 1x1 projection kernel (oneDNN's convolution on CPU float32, F.conv2d elsewhere)


def test_onednn_selection_per_device_and_dtype():
    cpu32 = torch.empty(1, 2, 3, 1)
    expected = torch.backends.mkldnn.is_available()
    assert projection.use_onednn(cpu32) is expected
    assert not projection.use_onednn(cpu32.double())  # oneDNN has no float64 kernels
    assert not projection.use_onednn(cpu32.bfloat16())
    assert not projection.use_onednn(torch.empty(1, 2, 3, 1, device="meta"))  # stands in for CUDA


@pytest.fixture(params=["onednn", "conv2d"])
def projection_kernel(request, monkeypatch):
    """Forces one projection kernel and records that it was the one called."""
    calls = []
    if request.param == "onednn" and not torch.backends.mkldnn.is_available():
        pytest.skip("this torch build has no oneDNN")
    real = torch.mkldnn_convolution

    def spy(*args):
        calls.append(args[0].dtype)
        return real(*args)

    monkeypatch.setattr(torch, "mkldnn_convolution", spy)
    monkeypatch.setattr(projection, "use_onednn", lambda t, on=request.param == "onednn": on)
    return request.param, calls


@pytest.mark.parametrize(
    ("cls", "grid"),
    BLOCK_GRIDS,
    ids=str,
)
@pytest.mark.parametrize("chunk_elements", [1, 1 << 21])
def test_projection_kernels_match_oracle_float32(cls, grid, chunk_elements, projection_kernel, monkeypatch):
    """Both kernels of the fast path, forced on CPU, against the float64 oracle: forward and gradients."""
    kernel, calls = projection_kernel
    monkeypatch.setattr("ccnet.ops.dispatch.SMALL_PROBLEM_ELEMENTS", 0)
    monkeypatch.setattr("ccnet.ops.chunks.CHUNK_ELEMENTS", chunk_elements)
    module = _module(cls)
    x64 = torch.randn(2, 16, *grid, dtype=torch.float64)
    module32 = _module(cls).float()
    x = x64.float().requires_grad_()
    y = module32(x)
    assert y.dtype == torch.float32
    assert calls if kernel == "onednn" else not calls
    x_ref = x64.clone().requires_grad_()
    expected = dense_cca_block(x_ref, module)
    torch.testing.assert_close(y.double(), expected, rtol=1e-5, atol=1e-5)
    upstream = torch.randn_like(expected)
    grads = torch.autograd.grad(y, [x, *module32.parameters()], upstream.float())
    expected_grads = torch.autograd.grad(expected, [x_ref, *module.parameters()], upstream)
    names = ["x"] + [n for n, _ in module.named_parameters()]
    for name, got, want in zip(names, grads, expected_grads):
        torch.testing.assert_close(got.double(), want, rtol=2e-4, atol=2e-4, msg=f"grad {name}")


def test_projection_kernels_agree_in_float32(projection_kernel, monkeypatch):
    """The forced kernel against F.conv2d on a larger float32 problem (no oracle needed: same maths)."""
    monkeypatch.setattr("ccnet.ops.dispatch.SMALL_PROBLEM_ELEMENTS", 0)
    torch.manual_seed(10)
    rcca = ccnet.RecurrentCrissCrossAttention(64)
    with torch.no_grad():
        rcca.cca.gamma.fill_(0.7)
    x = torch.randn(2, 64, 13, 11, requires_grad=True)
    y = rcca(x)
    (grad,) = torch.autograd.grad(y.square().sum(), x)
    with monkeypatch.context() as patch:
        patch.setattr(projection, "use_onednn", lambda t: False)
        y_ref = rcca(x)
        (grad_ref,) = torch.autograd.grad(y_ref.square().sum(), x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "shape",
    [(2, 3, 4, 5), (1, 1, 4, 5), (2, 3, 1, 1), (1, 3, 1, 6), (2, 3, 2, 4, 5), (2, 1, 1, 1, 1), (2, 3, 7)],
)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_pixel_major_is_a_contiguous_channels_last_view(shape, layout):
    t = torch.randn(shape)
    if layout == "channels_last" and t.dim() in (4, 5):
        t = t.contiguous(memory_format=torch.channels_last if t.dim() == 4 else torch.channels_last_3d)
    elif layout == "strided":
        t = torch.randn(*shape[:-1], 2 * shape[-1])[..., ::2]
    out = pixel_major(t)
    assert out.is_contiguous()
    assert torch.equal(out, t.movedim(1, -1))


@pytest.mark.parametrize("contiguous", [True, False])
def test_pointwise_with_strided_weight_and_bias(contiguous, projection_kernel):
    """Module parameters may be strided views; both kernels must read them as such."""
    torch.manual_seed(11)
    x = torch.randn(2, 5, 7, 6)
    weight = torch.randn(6, 4).t()
    bias = torch.randn(8)[::2]
    if contiguous:
        weight, bias = weight.contiguous(), bias.contiguous()
    expected = x @ weight.t() + bias
    torch.testing.assert_close(projection.project(x, weight, bias), expected)
    torch.testing.assert_close(projection.project(x, weight, None), x @ weight.t())


def test_flop_count_includes_the_projections_of_the_cpu_path():
    """torch's FLOP counter must see the oneDNN 1x1 projections (ccnet info / bench / benchmarks use it)."""
    from ccnet.measure import flop_counter

    C, reduced, H, W, R = 64, 8, 40, 40, 2
    module = ccnet.RecurrentCrissCrossAttention(C, recurrence=R)
    with torch.no_grad(), flop_counter() as counter:
        module(torch.randn(1, C, H, W))
    N = H * W
    projections = R * 2 * N * C * (2 * reduced + C)  # by hand: 1x1 convs C -> C'/C'/C on every pixel
    attention = R * 2 * N * (H + W) * (reduced + C)  # energies (C') and aggregation (C) over row + column
    assert counter.get_total_flops() == pytest.approx(projections + attention, rel=0.02)
