"""The run configuration schema: dataclasses whose defaults are the paper's (mmsegmentation) recipe.

``Config()`` holds those defaults: CCNet R-50-D8, SGD lr 0.01 / momentum 0.9 / wd 5e-4, poly 0.9 to 1e-4,
CE + 0.4 x aux, 40k iterations of batch 8. A YAML file or override that leaves a key out inherits it from
here. What a bare ``ccnet train`` runs is the shipped ``default`` config (see :mod:`ccnet.config.load`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CategoryConsistentConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "ModelConfig",
    "OhemConfig",
    "OptimConfig",
    "TrainConfig",
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

    name: str = "ccnet_r50_d8"  # a registered model (``ccnet.models.list_models()``)
    pretrained: str | None = None  # whole-model weights to start from (zoo name or file)
    new_classifier: bool = False  # fine-tuning to another class set: all of `pretrained` but the classifiers
    # the architecture
    backbone: str | None = None
    output_stride: int | None = None
    norm: Literal["bn", "syncbn"] | None = None
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


@dataclass
class OptimConfig:
    """SGD (the recipes) or AdamW, with a per-iteration poly schedule and an optional linear warm-up."""

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9  # SGD only
    weight_decay: float = 5e-4
    power: float = 0.9
    min_lr: float = 1e-4
    warmup_iters: int = 0
    warmup_ratio: float = 1e-6  # warm-up starts at lr * warmup_ratio
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
