"""ONNX / TorchScript export, onnxruntime parity, the onnxruntime backend, ``ccnet export`` / ``predict``."""

from __future__ import annotations

import argparse
import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

import ccnet
import ccnet.cli
from ccnet.deploy.export import (
    compare_outputs,
    export_onnx,
    export_onnx_module,
    export_torchscript,
    onnx_parity,
    torchscript_parity,
)
from ccnet.engine.checkpoint import checkpoint_meta
from ccnet.models.weights import save_weights

HAS_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime", "onnxscript"))
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="needs the 'export' extra (onnx, onnxruntime)")

CLASSES = ("background", "red", "green", "blue", "yellow")
PALETTE = ((0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0))
# Parity sizes differ from the export example (2, 3, 64, 96) in batch, height and width.
PARITY_SHAPES = [(1, 3, 48, 80), (3, 3, 37, 53)]


def _tiny_model() -> torch.nn.Module:
    """ccnet_tiny (R=2) with non-trivial BatchNorm statistics and attention switched on (gamma != 0)."""
    torch.manual_seed(0)
    model = ccnet.create_model("ccnet_tiny", num_classes=len(CLASSES)).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
        model.head.context.cca.gamma.fill_(0.8)
    return model


@pytest.fixture(scope="module")
def model():
    return _tiny_model()


@pytest.fixture(scope="module")
def onnx_file(model, tmp_path_factory):
    if not HAS_ONNX:
        pytest.skip("needs the 'export' extra (onnx, onnxruntime)")
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return export_onnx(
        model, path, metadata={"classes": list(CLASSES), "palette": [list(c) for c in PALETTE]}
    )


@pytest.fixture(scope="module")
def weights_file(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    meta = checkpoint_meta(model, model_overrides={}, classes=CLASSES, palette=PALETTE)
    return save_weights(path, model.state_dict(), meta)


@needs_onnx
def test_onnx_graph_opset17_dynamic_inputs_and_metadata(onnx_file):
    import onnx

    proto = onnx.load(str(onnx_file))
    onnx.checker.check_model(proto)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 17
    (graph_input,), (graph_output,) = proto.graph.input, proto.graph.output
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert graph_input.name == "images" and dims == ["batch", 3, "height", "width"]
    dims = [d.dim_param or d.dim_value for d in graph_output.type.tensor_type.shape.dim]
    assert graph_output.name == "logits" and dims == ["batch", len(CLASSES), "height", "width"]
    metadata = {p.key: p.value for p in proto.metadata_props}
    assert metadata["ccnet.arch"] == '"ccnet_tiny"' and "ccnet.palette" in metadata


@needs_onnx
def test_onnxruntime_parity_at_other_sizes(model, onnx_file):
    for parity in onnx_parity(model, onnx_file, PARITY_SHAPES):
        assert parity.max_abs_diff < 1e-4, parity
        assert parity.argmax_agreement >= 0.9999, parity


@needs_onnx
def test_rcca_3d_exports_with_dynamic_time_height_width(tmp_path):
    import onnxruntime

    torch.manual_seed(0)
    module = ccnet.RecurrentCrissCrossAttention3d(16, recurrence=2, reduction=4).eval()
    with torch.no_grad():
        module.cca.gamma.fill_(0.9)
    path = export_onnx_module(module, torch.randn(2, 16, 3, 5, 6), tmp_path / "rcca3d.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    dims = [d for d in session.get_inputs()[0].shape]
    assert dims[1] == 16 and all(isinstance(d, str) for d in dims[:1] + dims[2:]), dims
    for shape in [(1, 16, 4, 7, 3), (3, 16, 2, 3, 8)]:
        x = torch.randn(shape)
        (got,) = session.run(None, {"x": x.numpy()})
        with torch.no_grad():
            parity = compare_outputs(module(x), torch.from_numpy(got))
        assert parity.max_abs_diff < 1e-4, parity


def test_torchscript_trace_roundtrip_matches_at_other_sizes(model, tmp_path):
    path = export_torchscript(model, tmp_path / "tiny.pt")
    for parity in torchscript_parity(model, path, PARITY_SHAPES):
        assert parity.max_abs_diff < 1e-5 and parity.argmax_agreement == 1.0, parity


@needs_onnx
def test_ort_backend_runs_through_the_segmenter(model, onnx_file):
    from ccnet.deploy.onnxruntime_backend import load_onnx_model
    from ccnet.engine.inference import Segmenter

    ort_model, info = load_onnx_model(onnx_file)
    assert ort_model.num_classes == len(CLASSES) and info["classes"] == CLASSES and info["palette"] == PALETTE
    image = np.random.default_rng(0).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    for options in ({}, {"mode": "slide", "crop_size": (32, 32), "flip": True}):
        ours = Segmenter(ort_model, **options).predict(image, return_probs=True)
        expected = Segmenter(model, **options).predict(image, return_probs=True)
        assert (ours.labels == expected.labels).float().mean() >= 0.9999
        assert (ours.probs - expected.probs).abs().max() < 1e-4


def _wrong_input_name_file(path):
    class Doubler(torch.nn.Module):
        def forward(self, pixels):
            return pixels * 2

    return export_onnx_module(
        Doubler(), torch.randn(2, 3, 8, 8), path, input_name="pixels", output_name="out"
    )


def _wrong_rank_file(path):
    class Flat(torch.nn.Module):
        def forward(self, images):
            return images * 2

    return export_onnx_module(Flat(), torch.randn(2, 3), path, input_name="images", output_name="logits")


@needs_onnx
@pytest.mark.parametrize(
    ("make", "found"),
    [
        (_wrong_input_name_file, "pixels: tensor(float) [batch, 3, axis2, axis3]"),
        (_wrong_rank_file, "images: tensor(float) [batch, 3]"),
        (lambda path: path.write_bytes(b"this is not an ONNX file") and path, "could not be loaded"),
    ],
    ids=["input-name", "rank", "not-onnx"],
)
def test_bad_onnx_files_name_expected_and_found_inputs(tmp_path, make, found):
    from ccnet.deploy.onnxruntime_backend import OnnxModelError, OrtSegmentationModel

    path = tmp_path / "bad.onnx"
    make(path)
    with pytest.raises(OnnxModelError) as info:
        OrtSegmentationModel(path)
    message = str(info.value)
    assert "expected" in message and "images: tensor(float) [batch, 3, height, width]" in message
    assert found in message


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    for name in ("export", "predict"):
        module = __import__(f"ccnet.cli.{name}", fromlist=["run"])
        command = sub.add_parser(name)
        command.set_defaults(_run=module.run)
        module.add_arguments(command)
    return parser


def _cli(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    return args._run(args)


@needs_onnx
def test_cli_export_onnx_reports_parity_and_predict_uses_onnxruntime(
    weights_file, onnx_file, tmp_path, capsys
):
    out_file = tmp_path / "cli.onnx"
    assert _cli(["export", "--weights", str(weights_file), "--format", "onnx", str(out_file)]) == 0
    printed = capsys.readouterr().out
    assert "parity vs PyTorch (onnxruntime)" in printed and "argmax agreement 100.0000%" in printed
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(image_dir / "a.png")
    labels = {}
    for backend, weights in (("onnxruntime", out_file), ("torch", weights_file), ("fast", weights_file)):
        out = tmp_path / backend
        argv = ["predict", str(image_dir), "--weights", str(weights), "--out", str(out), "--no-progress"]
        assert _cli([*argv, "--backend", backend, "--device", "cpu"]) == 0, capsys.readouterr().err
        labels[backend] = np.array(Image.open(out / "a.png"))
    assert (labels["onnxruntime"] == labels["torch"]).mean() >= 0.9999
    assert (labels["fast"] == labels["torch"]).mean() >= 0.9999
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    argv = ["predict", str(image_dir), "--weights", str(bad), "--out", str(tmp_path / "x"), "--no-progress"]
    assert _cli([*argv, "--backend", "onnxruntime"]) == 2
    assert "expected a ccnet export with input images" in capsys.readouterr().err


def test_cli_export_torchscript(weights_file, tmp_path, capsys):
    out_file = tmp_path / "cli.pt"
    assert _cli(["export", "--weights", str(weights_file), "--format", "torchscript", str(out_file)]) == 0
    assert "parity vs PyTorch (torch.jit.load)" in capsys.readouterr().out
    assert _cli(["export", "--weights", str(tmp_path / "missing.pth"), str(out_file)]) == 2
    assert "weights file not found" in capsys.readouterr().err


def test_a_failed_export_leaves_no_partial_file_and_keeps_the_old_one(tmp_path):
    class Broken(torch.nn.Module):
        num_classes = 2

        def forward(self, x):
            raise RuntimeError("this model cannot be traced")

    out = tmp_path / "model.pt"
    out.write_bytes(b"previous export")
    with pytest.raises(RuntimeError, match="cannot be traced"):
        export_torchscript(Broken(), out, example_size=(8, 8))
    assert out.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no partial file left behind
