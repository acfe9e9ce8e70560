"""Tracing, compiling and ONNX export of the attention modules (they take the portable path)."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch

import ccnet
from tests.oracles import dense_cca_block

HAS_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime", "onnxscript"))


def _rcca(cls, channels=16):
    torch.manual_seed(0)
    module = cls(channels, recurrence=2, reduction=4).eval()
    with torch.no_grad():
        module.cca.gamma.fill_(0.9)
    return module


def _expected(module, x):
    """The dense oracle applied R times, in float64, with the module's weights."""
    block = copy.deepcopy(module.cca).double()
    with torch.no_grad():
        y = x.double()
        for _ in range(module.recurrence):
            y = dense_cca_block(y, block)
        return y.float()


CASES = [
    (ccnet.RecurrentCrissCrossAttention, (2, 16, 7, 9), [(1, 16, 5, 12), (3, 16, 1, 1), (1, 16, 1, 6)]),
    (ccnet.RecurrentCrissCrossAttention3d, (2, 16, 3, 5, 6), [(1, 16, 1, 4, 7), (2, 16, 4, 1, 3)]),
]


@pytest.mark.parametrize(("cls", "example", "others"), CASES, ids=["2d", "3d"])
def test_jit_trace_generalises_to_other_sizes(cls, example, others):
    module = _rcca(cls)
    traced = torch.jit.trace(module, torch.randn(example))
    for shape in [example, *others]:
        x = torch.randn(shape)
        torch.testing.assert_close(traced(x), _expected(module, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("cls", "example", "others"), CASES, ids=["2d", "3d"])
def test_torch_compile_forward_and_backward(cls, example, others):
    module = _rcca(cls).train()
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True, dynamic=True)
    for shape in [example, others[0]]:
        x = torch.randn(shape, requires_grad=True)
        y = compiled(x)
        torch.testing.assert_close(y, _expected(module, x.detach()), atol=1e-5, rtol=1e-5)
        (grad,) = torch.autograd.grad(y.square().sum(), x)
        x_eager = x.detach().requires_grad_()
        (expected_grad,) = torch.autograd.grad(module(x_eager).square().sum(), x_eager)
        torch.testing.assert_close(grad, expected_grad, atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(not HAS_ONNX, reason="needs the 'export' extra (onnx, onnxruntime, onnxscript)")
@pytest.mark.parametrize(("cls", "example", "others"), CASES, ids=["2d", "3d"])
def test_onnx_export_opset17_dynamic_sizes_onnxruntime_parity(cls, example, others, tmp_path):
    import onnx
    import onnxruntime

    module = _rcca(cls)
    x = torch.randn(example)
    dims = {0: torch.export.Dim("batch")}
    dims.update({i: torch.export.Dim(f"axis{i}") for i in range(2, x.dim())})
    path = tmp_path / "rcca.onnx"
    torch.onnx.export(
        module,
        (x,),
        str(path),
        opset_version=17,
        dynamo=True,
        dynamic_shapes={"x": dims},
        input_names=["x"],
        output_names=["y"],
    )
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 17
    op_types = {node.op_type for node in model.graph.node}
    assert not op_types & {"EyeLike", "Trilu", "ScatterND", "Loop"}, op_types
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [example, *others]:
        xi = torch.randn(shape)
        (got,) = session.run(None, {"x": xi.numpy()})
        torch.testing.assert_close(torch.from_numpy(got), _expected(module, xi), atol=1e-5, rtol=1e-5)
