"""ccnet: semantic segmentation with criss-cross attention (CCNet), in plain PyTorch.

The attention ops are imported eagerly; the model and inference API (which pull in timm) on first use.
"""

import importlib

from ccnet.ops import (
    CrissCrossAttention,
    CrissCrossAttention3d,
    RecurrentCrissCrossAttention,
    RecurrentCrissCrossAttention3d,
    criss_cross_attention,
    criss_cross_attention_3d,
)

__version__ = "0.1.0"

# public name -> module that defines it, imported on first access
_LAZY = {
    **dict.fromkeys(
        (
            "CCNet",
            "SegmentationOutput",
            "convert_checkpoint",
            "create_model",
            "get_weights",
            "list_models",
            "list_weights",
        ),
        "ccnet.models",
    ),
    **dict.fromkeys(("Prediction", "Segmenter", "predict"), "ccnet.engine.inference"),
}

__all__ = [
    "CrissCrossAttention",
    "CrissCrossAttention3d",
    "RecurrentCrissCrossAttention",
    "RecurrentCrissCrossAttention3d",
    "__version__",
    "criss_cross_attention",
    "criss_cross_attention_3d",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ccnet' has no attribute {name!r}")
