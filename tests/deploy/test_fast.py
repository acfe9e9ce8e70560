"""The fast inference path (folded BatchNorm, channels-last, bf16, compile) against the plain path."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import ccnet
from ccnet.deploy.fast import fold_batchnorm, optimize_for_inference
from ccnet.engine.inference import Segmenter


def _randomise_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, attention switched on; eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.running_mean.copy_(torch.rand(c, generator=generator) - 0.5)
                module.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=generator))
                module.weight.copy_(0.5 + torch.rand(c, generator=generator))
                module.bias.copy_(0.4 * torch.rand(c, generator=generator) - 0.2)
        for module in model.modules():
            if hasattr(module, "gamma"):
                module.gamma.fill_(0.8)
    return model.eval()


def _model(name: str = "ccnet_tiny", **overrides) -> nn.Module:
    torch.manual_seed(0)
    return _randomise_norms(ccnet.create_model(name, num_classes=5, **overrides))


def _count_norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).out


@pytest.mark.parametrize("name", ["ccnet_tiny", "nonlocal_tiny", "ccnet_r50_d8"])
def test_fold_bn_removes_every_norm_and_keeps_the_logits(name):
    model = _model(name)
    x = torch.randn(2, 3, 64, 64)
    expected = _logits(model, x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimize_for_inference(model, fold_bn=True, channels_last=False)
    assert _count_norms(fast) == 0
    got = _logits(fast, x)
    scale = max(1.0, expected.abs().max().item())
    assert (got - expected).abs().max().item() < 1e-4 * scale  # logits of R-50 reach ~20 with random weights
    assert torch.equal(got.argmax(1), expected.argmax(1))
    # the caller's model is untouched
    assert _count_norms(model) > 0 and not model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_fold_batchnorm_in_place_needs_eval_mode():
    model = _model().train()
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(model)
    assert fold_batchnorm(model.eval()) == _count_norms(_model())


def test_channels_last_alone_is_equal():
    model = _model()
    x = torch.randn(2, 3, 48, 72)
    fast = optimize_for_inference(model, fold_bn=False, channels_last=True)
    assert _count_norms(fast) == _count_norms(model)
    assert (_logits(fast, x) - _logits(model, x)).abs().max().item() < 1e-5


def test_bf16_on_a_cpu_without_bf16_kernels_warns(monkeypatch):
    model = _model()
    monkeypatch.setattr("ccnet.deploy.fast.cpu_supports_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="no native bf16 kernels"):
        optimize_for_inference(model, bf16=True)
    monkeypatch.setattr("ccnet.deploy.fast.cpu_supports_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optimize_for_inference(model, bf16=True)
        optimize_for_inference(model)  # float32: nothing to say on either CPU


@pytest.mark.filterwarnings("ignore:optimize_for_inference.bf16=True.:RuntimeWarning")
def test_bf16_autocast_agrees_on_the_argmax():
    # bf16 keeps 8 mantissa bits: logits move by ~1e-2 relative; pixels whose top-2 logits are that close can
    # flip. Tolerance on this tiny model: >= 99% argmax agreement, max |diff| < 0.05 (logits are O(1)).
    model = _model()
    x = torch.randn(2, 3, 64, 64)
    expected = _logits(model, x)
    fast = optimize_for_inference(model, bf16=True)
    got = _logits(fast, x)
    assert got.dtype == torch.float32
    assert (got - expected).abs().max().item() < 0.05
    assert (got.argmax(1) == expected.argmax(1)).float().mean().item() >= 0.99


def test_segmenter_uses_the_fast_model_unchanged():
    model = _model()
    fast = optimize_for_inference(model)
    assert fast.align_corners == model.align_corners and fast.num_classes == model.num_classes
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    ours = Segmenter(fast, flip=True).predict(image, return_probs=True)
    expected = Segmenter(model, flip=True).predict(image, return_probs=True)
    assert (ours.probs - expected.probs).abs().max() < 1e-5
    assert torch.equal(ours.labels, expected.labels)
    with pytest.raises(RuntimeError, match="inference only"):
        fast.train()


def test_compile_path_is_equal():
    pytest.importorskip("torch._dynamo")
    model = _model()
    x = torch.randn(1, 3, 32, 32)
    fast = optimize_for_inference(model, compile=True, compile_options={"backend": "aot_eager"})
    assert (_logits(fast, x) - _logits(model, x)).abs().max().item() < 1e-5


def test_model_benchmark_quick_smoke(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "model.py"
    command = [
        sys.executable,
        str(script),
        "--quick",
        "--no-memory",
        "--repetitions",
        "1",
        "--out",
        str(tmp_path),
    ]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    report = json.loads((tmp_path / "model-quick.json").read_text())
    variants = {row["variant"] for row in report["rows"] if row["phase"] == "inference"}
    assert {"plain", "fast_fp32", "bf16", "onnxruntime"} <= variants
    assert all(row["argmax_agreement"] >= 0.9999 for row in report["rows"] if row["variant"] == "fast_fp32")
    markdown = (tmp_path / "model-quick.md").read_text()
    assert "| variant |" in markdown and "bf16 >= 2.0x plain" in markdown
    render = [sys.executable, str(script), "--render", str(tmp_path / "model-quick.json")]
    (tmp_path / "model-quick.md").write_text("")
    subprocess.run(render, check=True, capture_output=True, text=True, timeout=120)
    assert (tmp_path / "model-quick.md").read_text() == markdown  # the report is derived from the JSON
