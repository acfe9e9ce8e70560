"""onnxruntime backend: an exported ccnet ONNX file used like the PyTorch model.

:class:`OrtSegmentationModel` is an ``nn.Module`` without parameters whose forward maps normalised images
(B, 3, H, W) float32 to a :class:`~ccnet.models.SegmentationOutput` with ``out`` = logits (B, K, H, W)
float32, computed by an onnxruntime session; it exposes ``num_classes``, ``align_corners``, ``preprocess``,
``arch``, ``classes`` and ``flip_pairs`` (left/right classes swapped by flip testing) from the file's ccnet
metadata, so :class:`ccnet.engine.inference.Segmenter` (whole, slide,
multi-scale, flip) and ``ccnet predict --backend onnxruntime`` use it unchanged.

Loading validates the file against what :func:`ccnet.deploy.export.export_onnx` writes -- one input
``images`` float32 of rank 4 with 3 channels, one output ``logits`` float32 of rank 4 -- and raises
:class:`OnnxModelError` naming the expected and the found inputs/outputs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ccnet.data.meta import check_flip_pairs, flip_pairs_for_classes
from ccnet.deploy.export import INPUT_NAME, METADATA_PREFIX, OUTPUT_NAME, onnxruntime_session
from ccnet.preprocess import Preprocess

__all__ = ["OnnxModelError", "OrtSegmentationModel", "load_onnx_model"]

EXPECTED_INPUT = f"{INPUT_NAME}: tensor(float) [batch, 3, height, width]"
EXPECTED_OUTPUT = f"{OUTPUT_NAME}: tensor(float) [batch, num_classes, height, width]"


class OnnxModelError(ValueError):
    """The file is not an ONNX model, or not one exported by ``ccnet export`` (wrong inputs/outputs)."""


def _describe(values) -> str:
    """'name: type [dims]' for onnxruntime NodeArg values, comma separated."""
    if not values:
        return "none"
    return ", ".join(f"{v.name}: {v.type} [{', '.join(str(d) for d in v.shape)}]" for v in values)


def _validate(path: Path, inputs, outputs) -> None:
    problems = []
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        problems.append("input name/count")
    elif inputs[0].type != "tensor(float)" or len(inputs[0].shape) != 4 or inputs[0].shape[1] not in (3, "3"):
        problems.append("input type/rank/channels")
    if len(outputs) != 1 or outputs[0].type != "tensor(float)" or len(outputs[0].shape) != 4:
        problems.append("output")
    if problems:
        raise OnnxModelError(
            f"{path} is not a ccnet segmentation export ({', '.join(problems)} mismatch): expected input "
            f"{EXPECTED_INPUT} and output {EXPECTED_OUTPUT}; found inputs {_describe(inputs)} and outputs "
            f"{_describe(outputs)} (export with `ccnet export --format onnx`)"
        )


class OrtSegmentationModel(nn.Module):
    """An exported ccnet ONNX model run by onnxruntime; see the module docstring.

    Args:
        path: the ``.onnx`` file.
        threads: onnxruntime intra-op threads (None: onnxruntime's default, all cores).
        providers: execution providers (default: CUDA if the device is CUDA and available, else CPU).
        device: selects the provider; outputs are returned on the input's device.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        threads: int | None = None,
        providers: list[str] | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.device = torch.device(device)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX file not found: {self.path}")
        try:
            import onnxruntime
        except ImportError as err:  # pragma: no cover - the 'export' extra
            raise RuntimeError(
                "the onnxruntime backend needs onnxruntime (pip install ccnet[export])"
            ) from err
        if providers is None:
            available = onnxruntime.get_available_providers()
            wants_cuda = self.device.type == "cuda" and "CUDAExecutionProvider" in available
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if wants_cuda else []
        try:
            self.session = onnxruntime_session(self.path, threads=threads, providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types for unreadable files
            raise OnnxModelError(
                f"{self.path} could not be loaded as an ONNX model ({type(err).__name__}: "
                f"{str(err).strip().splitlines()[0] if str(err).strip() else 'no details'}); expected a "
                f"ccnet export with input {EXPECTED_INPUT} and output {EXPECTED_OUTPUT}"
            ) from err
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        _validate(self.path, inputs, outputs)
        self.metadata = self._read_metadata()
        output_classes = outputs[0].shape[1]
        self.num_classes = int(self.metadata.get("num_classes") or output_classes)
        self.align_corners = bool(self.metadata.get("align_corners", False))
        self.arch = self.metadata.get("arch")
        self.pretrained_cfg = None
        self.classes = self.metadata.get("classes")
        self.palette = self.metadata.get("palette")
        pairs = self.metadata.get("flip_pairs")
        try:  # files exported before flip pairs were stored: the pairs of the dataset with these classes
            self.flip_pairs = check_flip_pairs(
                pairs if pairs is not None else flip_pairs_for_classes(self.classes),
                self.num_classes,
                f"{self.path}: metadata flip_pairs",
            )
        except ValueError as err:
            raise OnnxModelError(str(err)) from None
        preprocess = self.metadata.get("preprocess")
        if preprocess is not None:
            self.preprocess = Preprocess(
                mean=tuple(preprocess["mean"]), std=tuple(preprocess["std"]), bgr=bool(preprocess["bgr"])
            )

    def _read_metadata(self) -> dict[str, Any]:
        """The ``ccnet.*`` metadata written by the exporter, JSON-decoded (empty for other files)."""
        raw = self.session.get_modelmeta().custom_metadata_map
        values = {}
        for key, value in raw.items():
            if key.startswith(METADATA_PREFIX):
                try:
                    values[key[len(METADATA_PREFIX) :]] = json.loads(value)
                except json.JSONDecodeError:
                    values[key[len(METADATA_PREFIX) :]] = value
        return values

    def forward(self, images: Tensor) -> Any:
        """(B, 3, H, W) normalised images -> SegmentationOutput(out=logits (B, K, H, W) float32)."""
        from ccnet.models import SegmentationOutput

        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected normalised images (B, 3, H, W), got shape {tuple(images.shape)}")
        array = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
        (logits,) = self.session.run(None, {INPUT_NAME: array})
        return SegmentationOutput(torch.from_numpy(logits).to(images.device))

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, arch={self.arch!r}, num_classes={self.num_classes}"


def load_onnx_model(
    path: str | os.PathLike, *, device: torch.device | str = "cpu", threads: int | None = None
) -> tuple[OrtSegmentationModel, dict[str, Any]]:
    """(model, info) like :func:`ccnet.engine.checkpoint.load_model`: info holds ``classes`` and ``palette``
    from the file's metadata (or None)."""
    model = OrtSegmentationModel(path, device=device, threads=threads)
    palette = tuple(tuple(c) for c in model.palette) if model.palette else None
    classes = tuple(model.classes) if model.classes else None
    return model, {"classes": classes, "palette": palette}
