"""CCNet models: registry, backbones, heads, model zoo and checkpoint converters."""

from ccnet.models import tiny  # noqa: F401  (registers ccnet_tiny, fcn_tiny, nonlocal_tiny)
from ccnet.models.backbone import BACKBONES, build_backbone
from ccnet.models.ccnet import CCNet, SegmentationOutput, build_ccnet
from ccnet.models.convert import (
    CheckpointMismatchError,
    convert_backbone_checkpoint,
    convert_checkpoint,
    detect_source,
    load_checkpoint_strict,
)
from ccnet.models.heads import AuxHead, ContextHead, NonLocal2d
from ccnet.models.registry import create_model, get_model_builder, list_models, register_model
from ccnet.models.weights import read_weights, save_weights
from ccnet.models.zoo import ZOO, Preprocess, WeightsEntry, get_weights, list_weights

__all__ = [
    "BACKBONES",
    "ZOO",
    "AuxHead",
    "CCNet",
    "CheckpointMismatchError",
    "ContextHead",
    "NonLocal2d",
    "Preprocess",
    "SegmentationOutput",
    "WeightsEntry",
    "build_backbone",
    "build_ccnet",
    "convert_backbone_checkpoint",
    "convert_checkpoint",
    "create_model",
    "detect_source",
    "get_model_builder",
    "get_weights",
    "list_models",
    "list_weights",
    "load_checkpoint_strict",
    "read_weights",
    "register_model",
    "save_weights",
]
