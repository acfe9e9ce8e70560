"""CCNet models: architectures, the registry and factory, backbones, heads, model zoo and checkpoint
converters.

Importing this package registers every architecture of :mod:`ccnet.models.catalog` and the instance models
of :mod:`ccnet.models.maskrcnn`.
"""

from ccnet.models import (
    catalog,  # noqa: F401  (the registered architectures)
    maskrcnn,  # noqa: F401  (the registered instance models)
)
from ccnet.models.architecture import Architecture, HeadConfig
from ccnet.models.backbone import BACKBONES, TinyBackbone, build_backbone
from ccnet.models.ccnet import CCNet, SegmentationOutput, build_ccnet
from ccnet.models.convert import (
    CheckpointMismatchError,
    convert_backbone_checkpoint,
    convert_checkpoint,
    detect_source,
    inflate_2d_state_dict,
    load_checkpoint_strict,
)
from ccnet.models.factory import Pretrained, create_model, read_pretrained
from ccnet.models.heads import AuxHead, ContextHead, NonLocal2d
from ccnet.models.maskrcnn import InstanceArchitecture, MaskRCNNWithContext, build_maskrcnn
from ccnet.models.registry import ModelEntry, get_model_entry, list_models, register_model
from ccnet.models.video import CCNetVideo, build_ccnet_video
from ccnet.models.weights import read_weights, save_weights
from ccnet.models.zoo import ZOO, WeightsEntry, get_weights, list_weights
from ccnet.preprocess import Preprocess

__all__ = [
    "BACKBONES",
    "ZOO",
    "Architecture",
    "AuxHead",
    "CCNet",
    "CCNetVideo",
    "CheckpointMismatchError",
    "ContextHead",
    "HeadConfig",
    "InstanceArchitecture",
    "MaskRCNNWithContext",
    "ModelEntry",
    "NonLocal2d",
    "Preprocess",
    "Pretrained",
    "SegmentationOutput",
    "TinyBackbone",
    "WeightsEntry",
    "build_backbone",
    "build_ccnet",
    "build_ccnet_video",
    "build_maskrcnn",
    "convert_backbone_checkpoint",
    "convert_checkpoint",
    "create_model",
    "detect_source",
    "get_model_entry",
    "get_weights",
    "inflate_2d_state_dict",
    "list_models",
    "list_weights",
    "load_checkpoint_strict",
    "read_pretrained",
    "read_weights",
    "register_model",
    "save_weights",
]
