"""The run configuration schema: dataclasses whose defaults are the paper's (mmsegmentation) recipe.

``Config()`` holds those defaults: CCNet R-50-D8, SGD lr 0.01 / momentum 0.9 / wd 5e-4, poly 0.9 to 1e-4,
CE + 0.4 x aux, 40k iterations of batch 8. A YAML file or override that leaves a key out inherits it from
here. What a bare ``ccnet train`` runs is the shipped ``default`` config (see :mod:`ccnet.config.load`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "VALUE_RANGES",
    "CategoryConsistentConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "ModelConfig",
    "OhemConfig",
    "OptimConfig",
    "Range",
    "TrainConfig",
    "validate_config",
]


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the dotted key and what is allowed."""


@dataclass
class ModelConfig:
    """Which network to build (``ccnet.models.create_model``). ``None`` keeps the architecture's default.

    Besides ``name``, ``pretrained`` and ``new_classifier``, every field is a ``create_model`` override: of
    the model's :class:`~ccnet.models.architecture.Architecture` or of its
    :class:`~ccnet.models.architecture.HeadConfig` (``recurrence`` ... ``aux_channels``).
    """

    name: str = "ccnet_r50_d8"  # a registered model (``ccnet.models.list_models()``); maskrcnn_*: instances
    pretrained: str | None = None  # whole-model weights to start from (zoo name or file)
    new_classifier: bool = False  # fine-tuning to another class set: all of `pretrained` but the classifiers
    # the architecture
    backbone: str | None = None
    output_stride: int | None = None
    norm: Literal["bn", "syncbn", "frozen_bn"] | None = None  # frozen_bn: instance models only
    backbone_weights: str | None = None  # "timm", "open-mmlab", a path or None (random initialisation)
    align_corners: bool | None = None
    # the heads (HeadConfig)
    context: Literal["rcca", "nonlocal", "none"] | None = None
    recurrence: int | None = None  # R, criss-cross attention passes
    reduction: int | None = None  # query/key channel reduction of the attention
    channels: int | None = None  # decode head width
    activation: Literal["relu", "leaky_relu"] | None = None
    dropout: float | None = None
    aux: bool | None = None
    aux_channels: int | None = None  # 256 (mmseg) or 512 (authors, SSSeg)
    # video models (ccnet3d_*): frames per attention window, and which frames they predict
    clip_length: int | None = None
    frames: Literal["all", "centre"] | None = None
    # instance models (maskrcnn_*, ccnet.models.maskrcnn.InstanceArchitecture); context, recurrence,
    # reduction, backbone, norm and backbone_weights above apply to them too
    context_stage: Literal["layer1", "layer2", "layer3", "layer4"] | None = None  # the stage holding it
    context_block: int | None = None  # the module runs before this block of the stage (-1 = the last)
    trainable_layers: int | None = None  # ResNet stages trained, from layer4 (3: stem + res2 frozen)
    fpn_channels: int | None = None

    def overrides(self) -> dict[str, Any]:
        """The ``create_model`` overrides that are set."""
        skip = {"name", "pretrained", "new_classifier"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip and v is not None}


@dataclass
class DataConfig:
    """Datasets and loading. Sizes are (H, W); ``None`` takes the dataset's default."""

    dataset: str = "cityscapes"  # a name of ``ccnet.data.list_datasets()``
    root: str | None = None  # dataset directory (not needed by the procedural "context" dataset)
    train_split: str = "train"
    val_split: str = "val"
    # "mmseg": resize x [0.5, 2] + cat-max-ratio crop + flip + photometric distortion; "authors": the CCNet
    # authors' scales {0.7, ..., 2.1} + crop + flip; "none": normalisation only (fixed-size images).
    augment: Literal["mmseg", "authors", "none"] = "mmseg"
    crop_size: tuple[int, int] | None = None
    train_scale: tuple[int, int] | None = None  # (long side, short side) keep-ratio bound
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    photometric: bool = True
    num_workers: int = 4  # DataLoader workers per process
    # extra keyword arguments of the dataset class (e.g. length, image_size for "context")
    options: dict[str, Any] = field(default_factory=dict)
    val_options: dict[str, Any] = field(default_factory=dict)  # overrides ``options`` for the val split
    # instance models: the shorter side(s) the detector resizes images to (one drawn per training image:
    # the multi-scale option; evaluation uses the last) and the bound of the longer side; None = the
    # model's default (800 / 1333 for R-50/101)
    min_size: tuple[int, ...] | None = None
    max_size: int | None = None


@dataclass
class OptimConfig:
    """SGD (the recipes) or AdamW, with a per-iteration schedule and an optional linear warm-up.

    ``schedule``: ``"poly"`` (segmentation: ``power``, ``min_lr``), ``"multistep"`` (Mask R-CNN's 1x: lr x
    ``gamma`` at each of ``milestones``) or ``"step"`` (lr x ``gamma`` every ``step_size`` iterations).
    """

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9  # SGD only
    weight_decay: float = 5e-4
    power: float = 0.9
    min_lr: float = 1e-4
    warmup_iters: int = 0
    warmup_ratio: float = 1e-6  # warm-up starts at lr * warmup_ratio
    schedule: Literal["poly", "step", "multistep"] = "poly"
    milestones: tuple[int, ...] = ()  # multistep: iterations where lr is multiplied by gamma
    gamma: float = 0.1  # step / multistep decay factor
    step_size: int | None = None  # step: decay every step_size iterations
    clip_grad_norm: float | None = None  # max global gradient norm; None = no clipping


@dataclass
class OhemConfig:
    """Online hard example mining on the main head (the authors' Cityscapes recipe: 0.7 / 100000)."""

    enabled: bool = False
    thresh: float = 0.7  # keep pixels whose ground-truth probability is below this ...
    min_kept: int = 100000  # ... and at least this many of the hardest pixels per process batch


@dataclass
class CategoryConsistentConfig:
    """The TPAMI category consistent loss on the context module's output (see ``ccnet.losses``)."""

    enabled: bool = False
    dim: int = 16  # projection dimension of the features
    delta_v: float = 0.5
    delta_d: float = 1.5
    alpha: float = 1.0  # weight of the variance term
    beta: float = 1.0  # weight of the distance term
    gamma: float = 0.001  # weight of the regulariser


@dataclass
class LossConfig:
    """Cross-entropy (ignore index) on the main head + ``aux_weight`` x cross-entropy on the aux head."""

    aux_weight: float = 0.4
    ignore_index: int = 255
    ohem: OhemConfig = field(default_factory=OhemConfig)
    ccl: CategoryConsistentConfig = field(default_factory=CategoryConsistentConfig)


@dataclass
class TrainConfig:
    """Iteration-based training loop, checkpoints, logging and devices."""

    max_iters: int = 40000
    batch_size: int = 8  # global batch, split evenly over the processes
    val_interval: int = 4000  # validate every N iterations (and at the end); 0 = only at the end
    checkpoint_interval: int = 4000  # 0 = only at the end
    keep_last: int = 3  # iteration checkpoints kept (plus best.pt, the best by validation mIoU)
    log_interval: int = 50
    work_dir: str | None = None  # None = runs/<name>/<timestamp>
    seed: int = 0
    deterministic: bool = False  # torch.use_deterministic_algorithms (bitwise-reproducible CPU runs)
    device: str = "auto"  # "auto" (CUDA if available), "cpu", "cuda"
    amp: Literal["none", "bf16", "fp16"] = "none"  # fp16 only on CUDA (with a GradScaler)
    num_threads: int | None = None  # torch threads per process; None = CPU cores / processes
    sync_bn: bool = True  # synchronise batch-norm statistics across processes
    progress: bool = True  # tqdm progress bar (rank 0)
    tensorboard: bool = False  # write scalars to <work_dir>/tensorboard (needs the tensorboard package)


@dataclass
class EvalConfig:
    """Evaluation protocol (``ccnet.engine.inference.Segmenter``)."""

    mode: Literal["whole", "slide"] = "whole"
    crop_size: tuple[int, int] | None = None  # sliding-window tile; None = the training crop
    stride: tuple[int, int] | None = None  # None = about 2/3 of the tile
    test_scale: tuple[int, int] | None = None  # keep-ratio bound before inference; None = dataset default
    scales: tuple[float, ...] = (1.0,)  # multi-scale factors (mmseg: 0.5 .. 1.75)
    flip: bool = False
    batch_size: int = 1  # images (or tiles) per forward pass


@dataclass
class Config:
    """A whole run. ``name`` names the run directory and the saved files."""

    name: str = "ccnet"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# --- value ranges --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Range:
    """The interval a numeric config value must lie in (bounds inclusive unless ``open_*``)."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or (value < self.high if self.open_high else value <= self.high)

    def describe(self) -> str:
        """``>= 1``, ``> 0``, ``in [0, 1)``, ..."""
        if self.high is None:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.open_high else '<='} {self.high:g}"
        return (
            f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"
        )


_AT_LEAST_0, _AT_LEAST_1, _POSITIVE = Range(0), Range(1), Range(0, open_low=True)
_FRACTION = Range(0, 1)

# Dotted key -> the range of its value (of each element for tuples); None values are not checked. The one
# place for range checks, so that every message reads ``key: expected an integer >= 1, got 0``.
VALUE_RANGES: dict[str, Range] = {
    "model.output_stride": _AT_LEAST_1,
    "model.recurrence": _AT_LEAST_0,
    "model.reduction": _AT_LEAST_1,
    "model.channels": _AT_LEAST_1,
    "model.dropout": Range(0, 1, open_high=True),
    "model.aux_channels": _AT_LEAST_1,
    "model.clip_length": _AT_LEAST_1,
    "model.trainable_layers": Range(0, 5),
    "model.fpn_channels": _AT_LEAST_1,
    "data.crop_size": _AT_LEAST_1,
    "data.train_scale": _AT_LEAST_1,
    "data.ratio_range": _POSITIVE,
    "data.cat_max_ratio": Range(0, 1, open_low=True),
    "data.num_workers": _AT_LEAST_0,
    "data.min_size": _AT_LEAST_1,
    "data.max_size": _AT_LEAST_1,
    "optim.lr": _POSITIVE,
    "optim.momentum": Range(0, 1, open_high=True),
    "optim.weight_decay": _AT_LEAST_0,
    "optim.power": _AT_LEAST_0,
    "optim.min_lr": _AT_LEAST_0,
    "optim.warmup_iters": _AT_LEAST_0,
    "optim.warmup_ratio": _FRACTION,
    "optim.clip_grad_norm": _POSITIVE,
    "optim.milestones": _AT_LEAST_1,
    "optim.gamma": Range(0, 1, open_low=True),
    "optim.step_size": _AT_LEAST_1,
    "loss.aux_weight": _AT_LEAST_0,
    "loss.ignore_index": Range(0, 255),  # masks are uint8
    "loss.ohem.thresh": Range(0, 1, open_low=True),
    "loss.ohem.min_kept": _AT_LEAST_0,
    "loss.ccl.dim": _AT_LEAST_1,
    "loss.ccl.delta_v": _AT_LEAST_0,
    "loss.ccl.delta_d": _AT_LEAST_0,
    "loss.ccl.alpha": _AT_LEAST_0,
    "loss.ccl.beta": _AT_LEAST_0,
    "loss.ccl.gamma": _AT_LEAST_0,
    "train.max_iters": _AT_LEAST_1,
    "train.batch_size": _AT_LEAST_1,
    "train.val_interval": _AT_LEAST_0,  # 0 = only at the end
    "train.checkpoint_interval": _AT_LEAST_0,  # 0 = only at the end
    "train.keep_last": _AT_LEAST_1,
    "train.log_interval": _AT_LEAST_1,
    "train.seed": _AT_LEAST_0,  # seeds derive from non-negative integers
    "train.num_threads": _AT_LEAST_1,
    "eval.crop_size": _AT_LEAST_1,
    "eval.stride": _AT_LEAST_1,
    "eval.test_scale": _AT_LEAST_1,
    "eval.scales": _POSITIVE,
    "eval.batch_size": _AT_LEAST_1,
}

# "auto", "cpu", "cuda", "cuda:1", "mps": checked as text here; whether the device exists is known only on
# the machine that runs (ccnet.engine.dist.resolve_device).
_DEVICE = re.compile(r"auto|cpu|mps|(cuda|xpu)(:\d+)?")


def _lookup(config: Any, dotted: str) -> Any:
    value = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _check_range(key: str, value: Any, allowed: Range) -> None:
    kind = "an integer" if isinstance(value, int) and not isinstance(value, bool) else "a number"
    if value not in allowed:
        raise ConfigError(f"{key}: expected {kind} {allowed.describe()}, got {value!r}")


def validate_config(config: Config) -> Config:
    """Check the values of ``config`` that their types alone do not make valid (ranges, non-empty lists,
    ordered ranges, the device name); raise :class:`ConfigError` naming the dotted key and what is allowed.
    Returns ``config``."""
    for key, allowed in VALUE_RANGES.items():
        value = _lookup(config, key)
        if value is None:
            continue
        if isinstance(value, tuple):
            for index, element in enumerate(value):
                _check_range(f"{key}[{index}]", element, allowed)
        else:
            _check_range(key, value, allowed)
    low, high = config.data.ratio_range
    if low > high:
        raise ConfigError(f"data.ratio_range: expected [low, high] with low <= high, got {[low, high]}")
    oc = config.optim
    increasing = list(oc.milestones) == sorted(set(oc.milestones))
    if oc.schedule == "multistep" and not (oc.milestones and increasing):
        raise ConfigError(
            f"optim.milestones: schedule 'multistep' needs increasing iterations, e.g. [60000, 80000], got "
            f"{list(oc.milestones)}"
        )
    if oc.schedule == "step" and oc.step_size is None:
        raise ConfigError("optim.step_size: schedule 'step' needs it (decay every step_size iterations)")
    if config.data.min_size is not None and not config.data.min_size:
        raise ConfigError("data.min_size: expected at least one size (e.g. [800]), got []")
    if not config.eval.scales:
        raise ConfigError("eval.scales: expected at least one scale factor (e.g. [1.0]), got []")
    if not _DEVICE.fullmatch(config.train.device):
        raise ConfigError(
            f"train.device: expected 'auto', 'cpu', 'cuda' or 'cuda:<index>', got {config.train.device!r}"
        )
    for key in ("data.dataset", "data.train_split", "data.val_split", "model.name", "name"):
        if not _lookup(config, key):
            raise ConfigError(f"{key}: expected a non-empty string, got {_lookup(config, key)!r}")
    return config
