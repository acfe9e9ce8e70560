"""Deployment exports: ONNX (opset 17, dynamic batch/height/width) and TorchScript (trace) + parity checks.

The exported graph maps normalised images ``images`` (B, 3, H, W) float32 to ``logits`` (B, K, H, W)
float32 (the eval-mode ``out`` of :class:`~ccnet.models.SegmentationOutput`, at the input size; the
auxiliary head is not exported). The attention ops take their portable path while exporting (see
``ccnet.ops``). ONNX files also carry ccnet metadata (``metadata_props``): architecture, number of classes,
``align_corners``, the input normalisation and, when known, the class names, palette and left/right flip
pairs (``flip_pairs``, for flip testing that swaps e.g. LIP's arms; from ``model.flip_pairs`` or the known
dataset with these class names), so that
:class:`ccnet.deploy.onnxruntime_backend.OrtSegmentationModel` and ``ccnet predict --backend onnxruntime``
need nothing but the file.

The 3-D criss-cross attention (:class:`~ccnet.ops.RecurrentCrissCrossAttention3d`) exports the same way
with :func:`export_onnx_module`: ``x`` (B, C, T, H, W) -> ``y`` (B, C, T, H, W), dynamic B/T/H/W.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ccnet.data.meta import flip_pairs_for_classes
from ccnet.engine.dist import module_device

__all__ = [
    "INPUT_NAME",
    "METADATA_PREFIX",
    "OPSET",
    "OUTPUT_NAME",
    "LogitsOnly",
    "Parity",
    "compare_outputs",
    "export_onnx",
    "export_onnx_module",
    "export_torchscript",
    "onnx_parity",
    "onnxruntime_session",
    "torchscript_parity",
]

OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
METADATA_PREFIX = "ccnet."


class LogitsOnly(nn.Module):
    """``model(x).out`` as a plain tensor: (B, 3, H, W) -> logits (B, K, H, W); always in eval mode."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, images: Tensor) -> Tensor:
        output = self.model(images)
        if isinstance(output, Tensor):
            return output
        return output["out"] if isinstance(output, Mapping) else output.out

    def train(self, mode: bool = True) -> LogitsOnly:  # the wrapped model stays in eval mode
        return super().train(False)


@dataclass(frozen=True)
class Parity:
    """Agreement of an exported model with PyTorch on one input: ``shape`` of the input, max |logit diff|,
    the fraction of pixels whose argmax agrees."""

    shape: tuple[int, ...]
    max_abs_diff: float
    argmax_agreement: float

    def __str__(self) -> str:
        return (
            f"{tuple(self.shape)}: max |diff| {self.max_abs_diff:.2e}, "
            f"argmax agreement {100 * self.argmax_agreement:.4f}%"
        )


def compare_outputs(expected: Tensor, actual: Tensor, shape: Sequence[int] | None = None) -> Parity:
    """Max |expected - actual| and argmax agreement over dim 1 of two (B, K, ...) logits tensors."""
    expected, actual = expected.detach().float().cpu(), actual.detach().float().cpu()
    if expected.shape != actual.shape:
        raise ValueError(f"compare: shapes differ: {tuple(expected.shape)} vs {tuple(actual.shape)}")
    agreement = (expected.argmax(1) == actual.argmax(1)).float().mean().item() if expected.dim() > 1 else 1.0
    return Parity(tuple(shape or expected.shape), (expected - actual).abs().max().item(), float(agreement))


def _metadata(model: nn.Module, extra: Mapping[str, Any] | None) -> dict[str, str]:
    """ccnet's ONNX metadata: arch, num_classes, align_corners, preprocess (+ classes, palette, flip
    pairs)."""
    preprocess = getattr(model, "preprocess", None)
    values: dict[str, Any] = {
        "format": "ccnet-segmentation-v1",
        "arch": getattr(model, "arch", None) or type(model).__name__,
        "num_classes": getattr(model, "num_classes", None),
        "align_corners": bool(getattr(model, "align_corners", False)),
    }
    if preprocess is not None:
        values["preprocess"] = {
            "mean": list(preprocess.mean),
            "std": list(preprocess.std),
            "bgr": bool(preprocess.bgr),
        }
    values.update(extra or {})
    if "flip_pairs" not in values:
        own = getattr(model, "flip_pairs", None)
        pairs = own if own is not None else flip_pairs_for_classes(values.get("classes"))
        values["flip_pairs"] = [list(pair) for pair in pairs] or None
    return {METADATA_PREFIX + key: json.dumps(value) for key, value in values.items() if value is not None}


@contextlib.contextmanager
def _written_whole(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` that replaces it only once written completely: a failed export
    leaves neither a partial file nor a damaged previous one (``--force``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial{path.suffix}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def export_onnx_module(
    module: nn.Module,
    example: Tensor,
    path: str | os.PathLike,
    *,
    input_name: str = "x",
    output_name: str = "y",
    dynamic_axes: Mapping[int, str] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Export ``module`` (one tensor in, one out) to ONNX opset 17 with the dynamo exporter and check it.

    Args:
        example: an example input; its sizes in ``dynamic_axes`` must be >= 2 (size-1 dims get specialised).
        dynamic_axes: {dim: name} of the dynamic input dims; default: every dim but the channels (dim 1).
        metadata: string key/values stored in the model's ``metadata_props``.
    """
    import onnx  # noqa: F401  (fails here, before any work, without the ``export`` extra)

    path = Path(path)
    axes = dict(dynamic_axes) if dynamic_axes is not None else {0: "batch"}
    if dynamic_axes is None:
        axes.update({d: f"axis{d}" for d in range(2, example.dim())})
    for dim in axes:
        if example.shape[dim] < 2:
            raise ValueError(f"export: example size of dynamic dim {dim} must be >= 2, got {example.shape}")
    dims = {dim: torch.export.Dim(name) for dim, name in axes.items()}
    module = module.eval()
    with _written_whole(path) as partial:
        _export_onnx_file(module, example, partial, dims, input_name, output_name, metadata)
    return path


def _export_onnx_file(
    module: nn.Module,
    example: Tensor,
    path: Path,
    dims: Mapping[int, Any],
    input_name: str,
    output_name: str,
    metadata: Mapping[str, str] | None,
) -> None:
    """torch.onnx.export into ``path``, checked, with ``metadata`` stored in it."""
    import onnx

    torch.onnx.export(
        module,
        (example,),
        str(path),
        opset_version=OPSET,
        dynamo=True,
        dynamic_shapes=(dims,),
        input_names=[input_name],
        output_names=[output_name],
        external_data=False,
        verbose=False,
    )
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    if metadata:
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(path))


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    example_size: tuple[int, int] = (64, 96),
    batch: int = 2,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Export a segmentation model to ONNX: ``images`` (B, 3, H, W) -> ``logits`` (B, K, H, W), dynamic B/H/W.

    Args:
        model: a ccnet model (or any model returning logits / an output with ``.out``); not modified.
        example_size: (H, W) of the example traced (any size works at run time).
        batch: example batch size (>= 2).
        metadata: extra metadata, e.g. ``{"classes": [...], "palette": [...]}`` (JSON-serialisable).
    """
    wrapper = LogitsOnly(model)
    example = torch.randn(batch, 3, *example_size, device=module_device(model))
    return export_onnx_module(
        wrapper,
        example,
        path,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        dynamic_axes={0: "batch", 2: "height", 3: "width"},
        metadata=_metadata(model, metadata),
    )


def onnxruntime_session(
    path: str | os.PathLike, *, threads: int | None = None, providers: Sequence[str] = ()
):
    """An onnxruntime InferenceSession (CPU provider unless ``providers`` is given)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # Idle onnxruntime threads otherwise busy-wait and slow down PyTorch work in the same process.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(
        str(path), options, providers=list(providers) or ["CPUExecutionProvider"]
    )


@torch.no_grad()
def onnx_parity(
    model: nn.Module, path: str | os.PathLike, shapes: Sequence[Sequence[int]], *, seed: int = 0
) -> list[Parity]:
    """Run the ONNX file in onnxruntime and ``model`` (eval) on random inputs of each shape; compare."""
    session = onnxruntime_session(path)
    input_name = session.get_inputs()[0].name
    reference = LogitsOnly(model)
    generator = torch.Generator().manual_seed(seed)
    results = []
    for shape in shapes:
        x = torch.randn(*shape, generator=generator)
        (actual,) = session.run(None, {input_name: x.numpy()})
        expected = reference(x.to(module_device(model)))
        results.append(compare_outputs(expected, torch.from_numpy(actual), shape))
    return results


def export_torchscript(
    model: nn.Module, path: str | os.PathLike, *, example_size: tuple[int, int] = (64, 96), batch: int = 2
) -> Path:
    """``torch.jit.trace`` of :class:`LogitsOnly` (images (B, 3, H, W) -> logits (B, K, H, W)), saved.

    The traced graph follows input sizes (the attention's portable path has no size-dependent Python).
    """
    path = Path(path)
    wrapper = LogitsOnly(model)
    example = torch.randn(batch, 3, *example_size, device=module_device(model))
    with torch.no_grad(), warnings.catch_warnings():
        # The model's input checks are constant for traced inputs; trace/save are deprecated upstream.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
        traced = torch.jit.trace(wrapper, example, check_trace=False)
        with _written_whole(path) as partial:
            torch.jit.save(traced, str(partial))
    return path


@torch.no_grad()
def torchscript_parity(
    model: nn.Module, path: str | os.PathLike, shapes: Sequence[Sequence[int]], *, seed: int = 0
) -> list[Parity]:
    """Reload the TorchScript file and compare it with ``model`` on random inputs of each shape."""
    device = module_device(model)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
        loaded = torch.jit.load(str(path), map_location=device).eval()
    reference = LogitsOnly(model)
    generator = torch.Generator().manual_seed(seed)
    results = []
    for shape in shapes:
        x = torch.randn(*shape, generator=generator).to(device)
        results.append(compare_outputs(reference(x), loaded(x), shape))
    return results
