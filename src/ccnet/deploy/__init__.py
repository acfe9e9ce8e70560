"""Deployment: fast PyTorch inference, ONNX / TorchScript export and the onnxruntime backend.

- :mod:`~ccnet.deploy.fast` -- :func:`optimize_for_inference` (folded BatchNorm, channels-last, bf16
  autocast, ``torch.compile``) returning a :class:`FastSegmenter`.
- :mod:`~ccnet.deploy.export` -- :func:`export_onnx` / :func:`export_torchscript` and their parity checks
  against PyTorch.
- :mod:`~ccnet.deploy.onnxruntime_backend` -- :class:`OrtSegmentationModel`: an exported ONNX file used
  like the PyTorch model (by :class:`ccnet.engine.inference.Segmenter` and ``ccnet predict --backend
  onnxruntime``).

onnx and onnxruntime (the ``export`` extra) are imported only when a function needs them.
"""

from ccnet.deploy.export import (
    LogitsOnly,
    Parity,
    compare_outputs,
    export_onnx,
    export_onnx_module,
    export_torchscript,
    onnx_parity,
    onnxruntime_session,
    torchscript_parity,
)
from ccnet.deploy.fast import (
    FastSegmenter,
    cpu_supports_bf16,
    fold_batchnorm,
    optimize_for_inference,
    set_cpu_threads,
)
from ccnet.deploy.onnxruntime_backend import OnnxModelError, OrtSegmentationModel, load_onnx_model

__all__ = [
    "FastSegmenter",
    "LogitsOnly",
    "OnnxModelError",
    "OrtSegmentationModel",
    "Parity",
    "compare_outputs",
    "cpu_supports_bf16",
    "export_onnx",
    "export_onnx_module",
    "export_torchscript",
    "fold_batchnorm",
    "load_onnx_model",
    "onnx_parity",
    "onnxruntime_session",
    "optimize_for_inference",
    "set_cpu_threads",
    "torchscript_parity",
]
