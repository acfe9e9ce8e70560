"""CCNet models: registry, backbones, heads, model zoo and checkpoint converters."""

from ccnet.models import (
    tiny,  # noqa: F401  (registers ccnet_tiny, fcn_tiny, nonlocal_tiny)
    video,  # noqa: F401  (registers ccnet3d_r50_d8, ccnet3d_r101_d8, ccnet3d_tiny)
)
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
from ccnet.models.video import CCNetVideo, centre_index, inflate_2d_state_dict
from ccnet.models.weights import read_weights, save_weights
from ccnet.models.zoo import ZOO, Preprocess, WeightsEntry, get_weights, list_weights

__all__ = [
    "BACKBONES",
    "ZOO",
    "AuxHead",
    "CCNet",
    "CCNetVideo",
    "CheckpointMismatchError",
    "ContextHead",
    "NonLocal2d",
    "Preprocess",
    "SegmentationOutput",
    "WeightsEntry",
    "build_backbone",
    "build_ccnet",
    "centre_index",
    "convert_backbone_checkpoint",
    "convert_checkpoint",
    "create_model",
    "detect_source",
    "get_model_builder",
    "get_weights",
    "inflate_2d_state_dict",
    "list_models",
    "list_weights",
    "load_checkpoint_strict",
    "read_weights",
    "register_model",
    "save_weights",
]
