"""Mask R-CNN with one context module (recurrent criss-cross attention, a non-local block or none) in the
backbone: the TPAMI CCNet paper's COCO instance-segmentation experiment.

The detector is torchvision's :class:`~torchvision.models.detection.MaskRCNN` (its RPN, RoIAlign, box and mask
heads, and its input transform, which resizes and normalises); only the backbone differs: a ResNet + FPN
whose ``layer3`` (res4) runs ONE context module right before its last residual block, the placement of the
non-local block in the Non-local Neural Networks paper that CCNet follows (:class:`StageWithContext`). The
module is the project's own (:func:`ccnet.models.heads.make_context`: RCCA with R=2 and reduction 8, gamma
starting at 0; or a non-local block whose output BN scale starts at 0), so a fresh module is the identity and
torchvision's published COCO weights load into the model unchanged (:func:`load_torchvision_checkpoint`):
it then computes exactly what torchvision's model computes.

Registered names (``ccnet.list_models("maskrcnn_*")``): ``maskrcnn_r50_fpn_rcca`` / ``_nonlocal`` /
``maskrcnn_r50_fpn`` (the paper's three rows), the R-101 twins, and tiny CPU variants for the built-in
instance task and tests. Shapes: images are lists of (3, H_i, W_i) float tensors in [0, 1], RGB; the
outputs are torchvision's (a dict of losses in training mode; per image ``boxes`` (N, 4) XYXY, ``labels``
(N,), ``scores`` (N,), ``masks`` (N, 1, H_i, W_i) probabilities in eval mode).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.resnet import BasicBlock
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from ccnet.models.architecture import CONTEXTS, HeadConfig
from ccnet.models.convert import load_checkpoint_strict, unwrap_state_dict
from ccnet.models.registry import ModelEntry, register_model

if TYPE_CHECKING:
    from ccnet.models.factory import Pretrained

__all__ = [
    "INSTANCE_MODELS",
    "InstanceArchitecture",
    "MaskRCNNWithContext",
    "StageWithContext",
    "build_maskrcnn",
    "create_instance_model",
    "is_detection_state_dict",
    "load_torchvision_checkpoint",
    "upgrade_legacy_keys",
]

BACKBONES = ("resnet50", "resnet101", "tiny")
NORMS = ("frozen_bn", "bn")
STAGES = ("layer1", "layer2", "layer3", "layer4")
# the fine-tuning classifiers: what ``new_classifier`` leaves at random for another class set
CLASSIFIER_PREFIXES = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits.")


@dataclass(frozen=True)
class InstanceArchitecture:
    """A Mask R-CNN + context module, as data; ``create_model`` keyword arguments override fields.

    Attributes:
        backbone: ``"resnet50"``, ``"resnet101"`` (torchvision's ResNets, the published checkpoints' layout)
            or ``"tiny"`` (a 4-stage ResNet of BasicBlocks with 16..64 channels, for CPU runs and tests).
        context: ``"rcca"`` (recurrent criss-cross attention), ``"nonlocal"`` (a non-local block, the NL
            paper's "+1 NL") or ``"none"`` (the Mask R-CNN baseline).
        recurrence: R, criss-cross attention passes (2).
        reduction: query/key channel reduction of the criss-cross attention (8); the non-local block always
            uses C/2 as in the NL paper.
        context_stage: the ResNet stage holding the module (``"layer3"`` = res4).
        context_block: the module runs right before this block of the stage (-1: the last block).
        norm: ``"frozen_bn"`` (Detectron's frozen statistics and affine, for ImageNet / COCO initialisations)
            or ``"bn"`` (trainable BatchNorm, for training from scratch); the non-local block's own BN is
            always a trainable BatchNorm.
        trainable_layers: ResNet stages trained, counted from ``layer4`` (3: stem and ``layer1`` = res2
            frozen, the 1x recipe; 5: everything). The context module is always trained.
        backbone_weights: ImageNet initialisation of the ResNet: None (random), ``"torchvision"``
            (torchvision's IMAGENET1K_V1 weights, downloaded once) or a path / URL of a torchvision ResNet
            state dict (its ``fc.*`` classifier is dropped).
        fpn_channels: FPN width (256).
        min_size, max_size: torchvision's resize of the input: shorter side to ``min_size`` unless the
            longer side would exceed ``max_size``; several sizes: one drawn per training image (multi-scale
            training), evaluation uses the last.
        box_score_thresh: detections scored below are dropped (0.05); detections_per_img: at most this many.
    """

    backbone: Literal["resnet50", "resnet101", "tiny"] = "resnet50"
    context: Literal["rcca", "nonlocal", "none"] = "rcca"
    recurrence: int = 2
    reduction: int = 8
    context_stage: str = "layer3"
    context_block: int = -1
    norm: Literal["frozen_bn", "bn"] = "frozen_bn"
    trainable_layers: int = 3
    backbone_weights: str | None = None
    fpn_channels: int = 256
    min_size: int | tuple[int, ...] = 800
    max_size: int = 1333
    box_score_thresh: float = 0.05
    detections_per_img: int = 100

    def __post_init__(self) -> None:
        checks = {
            "backbone": (self.backbone, BACKBONES),
            "context": (self.context, CONTEXTS),
            "norm": (self.norm, NORMS),
            "context_stage": (self.context_stage, STAGES),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name}: unknown {value!r}; allowed: {list(allowed)}")
        if self.recurrence < 0:
            raise ValueError(f"recurrence must be >= 0, got {self.recurrence}")
        if not 0 <= self.trainable_layers <= 5:
            raise ValueError(f"trainable_layers must be in [0, 5], got {self.trainable_layers}")
        sizes = (self.min_size,) if isinstance(self.min_size, int) else tuple(self.min_size)
        if not sizes or min(sizes) < 1 or self.max_size < max(sizes):
            raise ValueError(
                f"min_size / max_size: expected 1 <= min_size <= max_size, got "
                f"{self.min_size} / {self.max_size}"
            )

    @property
    def is_video(self) -> bool:  # the engine asks every architecture
        return False

    def with_overrides(self, **overrides: Any) -> InstanceArchitecture:
        """A copy with the given fields replaced.

        Raises:
            ValueError: a name that is no field (valid names listed) or an invalid value.
        """
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(
                f"unknown model option(s) {unknown} of an instance model; valid: {sorted(fields)}"
            )
        if isinstance(overrides.get("min_size"), list):  # from JSON (saved model_overrides)
            overrides = {**overrides, "min_size": tuple(overrides["min_size"])}
        return dataclasses.replace(self, **overrides)


class KeepMemoryFormat(nn.Module):
    """Runs ``module`` and hands its output on in the input's memory format: RCCA answers in channels-last,
    and a contiguous model that changed layout there would round its later convolutions differently from
    the same model without the module (a published checkpoint's own outputs). (B, C, H, W) -> same."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        layout = torch.channels_last if channels_last else torch.contiguous_format
        return self.module(x).contiguous(memory_format=layout)


class StageWithContext(nn.Sequential):
    """A ResNet stage (``nn.Sequential`` of residual blocks) with a context module run right before block
    ``insert_before``: the blocks keep their names (``0``, ``1``, ...) and the module (wrapped in
    :class:`KeepMemoryFormat`) is the child ``context`` placed between them, so a checkpoint of the plain
    stage loads unchanged and the stage stays a ``Sequential`` (TorchScript). Indexing and ``len`` count
    the blocks only. (B, C_in, H, W) -> (B, C_out, H', W') as the stage.
    """

    def __init__(self, blocks: nn.Sequential, context: nn.Module, insert_before: int) -> None:
        count = len(blocks)
        if not -count <= insert_before < count:
            raise ValueError(f"context_block={insert_before}: the stage has {count} blocks")
        index = insert_before % count
        children: OrderedDict[str, nn.Module] = OrderedDict()
        for position, (name, block) in enumerate(blocks.named_children()):
            if position == index:
                children["context"] = KeepMemoryFormat(context)
            children[name] = block
        super().__init__(children)
        self.insert_before = index
        self.num_blocks = count

    def __getitem__(self, index: int) -> nn.Module:  # type: ignore[override]
        """Block ``index`` of the stage (the context module is not counted)."""
        return getattr(self, str(range(self.num_blocks)[index]))

    def __len__(self) -> int:
        return self.num_blocks


class MaskRCNNWithContext(MaskRCNN):
    """torchvision's :class:`~torchvision.models.detection.MaskRCNN` on a backbone with a context module.

    Training mode: ``model(images, targets)`` -> dict of losses (``loss_classifier``, ``loss_box_reg``,
    ``loss_mask``, ``loss_objectness``, ``loss_rpn_box_reg``). Eval mode: ``model(images)`` -> one dict per
    image (``boxes`` (N, 4), ``labels`` (N,), ``scores`` (N,), ``masks`` (N, 1, H, W)). Images: list of
    (3, H, W) float RGB in [0, 1]; targets: ``boxes`` (N, 4) XYXY, ``labels`` (N,) int64 in 1..K (0 is
    background), ``masks`` (N, H, W) uint8.

    Attributes: ``architecture`` (:class:`InstanceArchitecture`), ``num_classes`` (K + 1, background
    included, as torchvision counts), ``task = "instance"``, ``arch`` (the registered name, set by
    ``create_model``).
    """

    task = "instance"
    __jit_unused_properties__ = ["context", "context_prefix"]  # noqa: RUF012  (TorchScript reads this name)

    def __init__(
        self, backbone: nn.Module, num_classes: int, architecture: InstanceArchitecture, **kwargs: Any
    ) -> None:
        # torchvision takes the class count or a ready box predictor, not both
        super().__init__(backbone, num_classes=None if "box_predictor" in kwargs else num_classes, **kwargs)
        self.architecture = architecture
        self.num_classes = num_classes
        self.arch: str | None = None
        self.pretrained_cfg = None

    @property
    def context(self) -> nn.Module:
        """The inserted context module (``nn.Identity`` for the baseline)."""
        return getattr(self.backbone.body, self.architecture.context_stage).context.module

    @property
    def context_prefix(self) -> str:
        """Its state-dict prefix: ``backbone.body.layer3.context.``."""
        return f"backbone.body.{self.architecture.context_stage}.context."


# --- backbones ------------------------------------------------------------------------------------------
class TinyResNet(nn.Module):
    """A 4-stage ResNet of BasicBlocks (16, 32, 64, 64 channels; 1, 1, 2, 1 blocks) with torchvision's
    ResNet child names (``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1`` .. ``layer4``), strides
    4, 8, 16, 32 like a ResNet. (B, 3, H, W) -> stage outputs via ``IntermediateLayerGetter``."""

    widths = (16, 32, 64, 64)
    depths = (1, 1, 2, 1)

    def __init__(self, norm_layer: type[nn.Module]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, self.widths[0], 3, stride=2, padding=1, bias=False)
        self.bn1 = norm_layer(self.widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = self.widths[0]
        for index, (width, depth) in enumerate(zip(self.widths, self.depths, strict=True)):
            stride = 1 if index == 0 else 2
            blocks = []
            for block in range(depth):
                downsample = None
                if block == 0 and (stride != 1 or in_channels != width):
                    downsample = nn.Sequential(
                        nn.Conv2d(in_channels, width, 1, stride=stride, bias=False), norm_layer(width)
                    )
                blocks.append(
                    BasicBlock(
                        in_channels, width, stride if block == 0 else 1, downsample, norm_layer=norm_layer
                    )
                )
                in_channels = width
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))


def _resnet_trunk(architecture: InstanceArchitecture) -> tuple[nn.Module, list[int]]:
    """The ResNet (stem + 4 stages, no classifier) and its stage widths."""
    norm_layer = FrozenBatchNorm2d if architecture.norm == "frozen_bn" else nn.BatchNorm2d
    if architecture.backbone == "tiny":
        return TinyResNet(norm_layer), list(TinyResNet.widths)
    from torchvision.models import resnet50, resnet101

    build = {"resnet50": resnet50, "resnet101": resnet101}[architecture.backbone]
    weights = None
    if architecture.backbone_weights == "torchvision":
        from torchvision.models import ResNet50_Weights, ResNet101_Weights

        weights = {"resnet50": ResNet50_Weights, "resnet101": ResNet101_Weights}[architecture.backbone]
        weights = weights.IMAGENET1K_V1
    trunk = build(weights=weights, norm_layer=norm_layer)
    if architecture.backbone_weights not in (None, "torchvision"):
        _load_imagenet_weights(trunk, architecture.backbone_weights)
    del trunk.fc, trunk.avgpool
    return trunk, [256, 512, 1024, 2048]


def _load_imagenet_weights(trunk: nn.Module, location: str) -> None:
    """A torchvision-layout ResNet state dict (file or URL) into ``trunk``; ``fc.*`` is dropped."""
    from ccnet.models.convert import load_checkpoint_strict
    from ccnet.models.weights import read_weights

    checkpoint, _ = read_weights(location)
    state = {k: v for k, v in unwrap_state_dict(checkpoint).items() if not k.startswith("fc.")}
    if not any(isinstance(m, nn.BatchNorm2d) for m in trunk.modules()):  # FrozenBN: no step counter
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    # the classifier is deleted after loading: keep the trunk's own so that the check is about the rest
    state.update({k: v for k, v in trunk.state_dict().items() if k.startswith("fc.")})
    load_checkpoint_strict(trunk, state, what=f"backbone weights {location}")


def build_backbone_with_context(architecture: InstanceArchitecture) -> BackboneWithFPN:
    """ResNet + context module + FPN (torchvision's :class:`BackboneWithFPN`, P2..P5 + a max-pooled P6).

    (B, 3, H, W) -> OrderedDict ``"0"``..``"3"``, ``"pool"`` of (B, fpn_channels, H / s, W / s),
    s = 4, 8, 16, 32, 64.
    """
    trunk, widths = _resnet_trunk(architecture)
    stage_index = STAGES.index(architecture.context_stage)
    stage = getattr(trunk, architecture.context_stage)
    # between two blocks the features have the stage's width; before its first block, the stage's input's
    first = architecture.context_block in (0, -len(stage))
    stage_input = widths[stage_index - 1] if stage_index else trunk.conv1.out_channels
    head = HeadConfig(
        context=architecture.context,
        recurrence=architecture.recurrence,
        reduction=architecture.reduction,
        channels=stage_input if first else widths[stage_index],
    )
    from ccnet.models.heads import make_context

    context = make_context(head, norm="bn")
    setattr(trunk, architecture.context_stage, StageWithContext(stage, context, architecture.context_block))
    # torchvision's _resnet_fpn_extractor freezing: the stages counted from layer4 (+ the stem at 5) train
    trained = ["layer4", "layer3", "layer2", "layer1", "conv1"][: architecture.trainable_layers]
    if architecture.trainable_layers == 5:
        trained.append("bn1")
    for name, parameter in trunk.named_parameters():
        if not name.startswith(tuple(trained)):
            parameter.requires_grad_(False)
    for parameter in context.parameters():
        parameter.requires_grad_(True)
    return BackboneWithFPN(
        trunk,
        return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
        in_channels_list=widths,
        out_channels=architecture.fpn_channels,
        extra_blocks=LastLevelMaxPool(),
    )


def build_maskrcnn(architecture: InstanceArchitecture, num_classes: int) -> MaskRCNNWithContext:
    """The network with random weights (apart from ``backbone_weights``); ``num_classes`` counts the
    background (COCO: 91, torchvision's category-id space)."""
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background too: expected >= 2, got {num_classes}")
    backbone = build_backbone_with_context(architecture)
    options: dict[str, Any] = {
        "min_size": architecture.min_size,
        "max_size": architecture.max_size,
        "box_score_thresh": architecture.box_score_thresh,
        "box_detections_per_img": architecture.detections_per_img,
    }
    if architecture.backbone != "tiny":
        return MaskRCNNWithContext(backbone, num_classes, architecture, **options)
    channels = architecture.fpn_channels
    options.update(
        rpn_anchor_generator=AnchorGenerator(((16,), (32,), (64,), (128,), (256,)), ((0.5, 1.0, 2.0),) * 5),
        # a few objects per small image: fewer proposals and sampled RoIs (RoIAlign's backward dominates)
        rpn_pre_nms_top_n_train=200,
        rpn_post_nms_top_n_train=100,
        rpn_pre_nms_top_n_test=200,
        rpn_post_nms_top_n_test=100,
        box_batch_size_per_image=64,
        box_head=TwoMLPHead(channels * 7 * 7, 128),
        box_predictor=FastRCNNPredictor(128, num_classes),
        mask_head=MaskRCNNHeads(channels, (32, 32), 1),
        mask_predictor=MaskRCNNPredictor(32, 32, num_classes),
    )
    return MaskRCNNWithContext(backbone, num_classes, architecture, **options)


# --- weights --------------------------------------------------------------------------------------------
def is_detection_state_dict(state: Mapping[str, Any]) -> bool:
    """Whether a state dict has torchvision's detection layout (``backbone.body.*``, ``roi_heads.*``)."""
    return any(k.startswith("backbone.body.") for k in state) and any(
        k.startswith("roi_heads.") for k in state
    )


def upgrade_legacy_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """torchvision's published v1 checkpoints predate ``Conv2dNormActivation``: ``rpn.head.conv.*`` ->
    ``rpn.head.conv.0.0.*`` and ``roi_heads.mask_head.mask_fcn<i>.*`` -> ``roi_heads.mask_head.<i-1>.0.*``
    (what torchvision's own ``_load_from_state_dict`` hooks do for old files)."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("rpn.head.conv.") and key.count(".") == 3:
            key = "rpn.head.conv.0.0." + key.rsplit(".", 1)[1]
        elif key.startswith("roi_heads.mask_head.mask_fcn"):
            module, kind = key[len("roi_heads.mask_head.mask_fcn") :].split(".", 1)
            key = f"roi_heads.mask_head.{int(module) - 1}.0.{kind}"
        out[key] = value
    return out


def load_torchvision_checkpoint(
    model: MaskRCNNWithContext,
    checkpoint: Mapping[str, Any],
    *,
    what: str = "checkpoint",
    new_classifier: bool = False,
) -> list[str]:
    """Load a torchvision Mask R-CNN checkpoint (published COCO layout, v1 or current key names; or our own
    saved weights, which hold the context module too) into ``model``; returns the keys left at their
    initialisation (the context module's, when the checkpoint has none: gamma = 0 / BN scale 0 keeps the
    module the identity, so the model computes what the checkpoint's model computes).

    Every tensor of the checkpoint must find its place and every tensor of the model outside the context
    module must be in the checkpoint; ``num_batches_tracked`` counters are dropped for frozen-BN models
    (FrozenBatchNorm2d has none). ``new_classifier``: the box and mask classifiers keep their random
    initialisation (fine-tuning to another class set).

    Raises:
        ccnet.models.convert.CheckpointMismatchError: listing missing keys, unexpected keys and shape
            mismatches.
    """
    state = upgrade_legacy_keys(unwrap_state_dict(checkpoint))
    expected = model.state_dict()
    state = {k: v for k, v in state.items() if k in expected or not k.endswith("num_batches_tracked")}
    optional = {k for k in expected if k.startswith(model.context_prefix)}
    if new_classifier:
        optional |= {k for k in expected if k.startswith(CLASSIFIER_PREFIXES)}
        state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    return load_checkpoint_strict(model, state, what=what, optional=optional)


def detection_num_classes(state: Mapping[str, Tensor]) -> int | None:
    """K + 1 of a detection state dict, read from the box classifier."""
    weight = state.get("roi_heads.box_predictor.cls_score.weight")
    return None if weight is None else int(weight.shape[0])


def create_instance_model(
    entry: ModelEntry,
    *,
    num_classes: int | None,
    pretrained: Pretrained | None,
    new_classifier: bool,
    overrides: Mapping[str, Any],
) -> MaskRCNNWithContext:
    """``ccnet.create_model`` for instance models (see there): build, then load ``pretrained``."""
    if pretrained is not None and num_classes is None:
        num_classes = pretrained.num_classes
    if new_classifier and pretrained is None:
        raise ValueError(f"create_model({entry.name!r}): new_classifier=True needs pretrained weights")
    if num_classes is None:
        raise ValueError(
            f"create_model({entry.name!r}): num_classes is required (no pretrained weights tell it)"
        )
    if pretrained is not None and not new_classifier and pretrained.num_classes not in (None, num_classes):
        raise ValueError(
            f"weights {pretrained.location} have {pretrained.num_classes} classes (background included), "
            f"num_classes={num_classes} asked; pass new_classifier=True to fine-tune to another class set"
        )
    architecture = entry.architecture.with_overrides(**overrides)
    if pretrained is not None:  # whole-model weights replace every backbone tensor anyway
        architecture = dataclasses.replace(architecture, backbone_weights=None)
    model = entry.build(architecture, num_classes)
    if pretrained is not None:
        load_torchvision_checkpoint(
            model, pretrained.state, what=f"weights {pretrained.location}", new_classifier=new_classifier
        )
    model.arch = entry.name
    return model


# --- the registered models ------------------------------------------------------------------------------
R50 = InstanceArchitecture(backbone="resnet50")
R101 = InstanceArchitecture(backbone="resnet101")
TINY = InstanceArchitecture(
    backbone="tiny",
    norm="bn",
    trainable_layers=5,
    fpn_channels=32,
    min_size=128,
    max_size=192,
)
_ROWS = {"_rcca": "rcca", "_nonlocal": "nonlocal", "": "none"}
_WHAT = {
    "rcca": "+ RCCA (R=2) before the last block of res4",
    "nonlocal": "+ one non-local block before the last block of res4",
    "none": "baseline",
}

# name -> (architecture, description)
INSTANCE_MODELS: dict[str, tuple[InstanceArchitecture, str]] = {}
for _suffix, _context in _ROWS.items():
    for _prefix, _base, _label in (
        ("maskrcnn_r50_fpn", R50, "Mask R-CNN R-50-FPN (torchvision)"),
        ("maskrcnn_r101_fpn", R101, "Mask R-CNN R-101-FPN (torchvision)"),
        ("maskrcnn_tiny", TINY, "tiny Mask R-CNN for CPU runs"),
    ):
        INSTANCE_MODELS[_prefix + _suffix] = (
            dataclasses.replace(_base, context=_context),
            f"{_label} {_WHAT[_context]}",
        )

for _name, (_architecture, _description) in INSTANCE_MODELS.items():
    register_model(ModelEntry(_name, build_maskrcnn, _architecture, _description, task="instance"))
