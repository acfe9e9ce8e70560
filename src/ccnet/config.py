"""Run configuration: dataclasses whose defaults are the paper's (mmsegmentation) recipe, YAML files and
``key.sub=value`` overrides.

A config is resolved in three layers, each checked against the dataclass fields (an unknown key or a value
of the wrong type raises :class:`ConfigError` naming the dotted key and what is allowed):

1. the dataclass defaults (``Config()``): CCNet R-50-D8, SGD lr 0.01 / momentum 0.9 / wd 5e-4, poly 0.9 to
   1e-4, CE + 0.4 x aux, 40k iterations of batch 8;
2. a YAML file, which may name at most one ``base:`` file (a path relative to itself, without a base of its
   own) whose values it overrides;
3. ``a.b=value`` overrides, each value parsed with ``yaml.safe_load`` (``true``, ``0.5``, ``[769, 769]``,
   ``null``).

Floats also accept strings such as ``1e-4`` (YAML 1.1 reads a float without a dot as a string), ints are
accepted where floats are expected, and YAML lists where tuples are expected.

>>> config = load_config(None, ["optim.lr=0.02", "train.max_iters=100"])
>>> config.optim.lr, config.train.max_iters
(0.02, 100)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

__all__ = [
    "BUILTIN_CONFIGS",
    "CONFIG_DIR",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "parse_override",
    "resolve_config_path",
    "save_config",
]


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the dotted key and what is allowed."""


@dataclass
class ModelConfig:
    """Which network to build (``ccnet.models.create_model``). ``None`` keeps the builder's default."""

    name: str = "ccnet_r50_d8"  # a registered model (``ccnet.models.list_models()``)
    recurrence: int | None = None  # R, criss-cross attention passes
    activation: Literal["relu", "leaky_relu"] | None = None
    aux_channels: int | None = None  # 256 (mmseg) or 512 (authors, SSSeg)
    align_corners: bool | None = None
    backbone: str | None = None
    norm: Literal["bn", "syncbn"] | None = None
    dropout: float | None = None
    backbone_weights: str | None = None  # "timm", "open-mmlab", a path or None (random initialisation)
    pretrained: str | None = None  # whole-model weights to start from (zoo name or file)
    new_classifier: bool = False  # fine-tuning to another class set: all of `pretrained` but the classifiers
    # video models (ccnet3d_*): frames per attention window, and which frames they predict
    clip_length: int | None = None
    frames: Literal["all", "centre"] | None = None

    def overrides(self) -> dict[str, Any]:
        """Builder keyword arguments that are set (``create_model`` drops ``None`` values anyway)."""
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


# --- built-in configs -------------------------------------------------------------------------------
# The default run of `ccnet train` with no arguments: the tiny CCNet on the built-in context dataset, a
# few minutes on 2 CPU cores. configs/default.yaml holds the same values (a test keeps them equal).
BUILTIN_CONFIGS: dict[str, dict[str, Any]] = {
    "default": {
        "name": "default",
        "model": {"name": "ccnet_tiny", "recurrence": 2},
        "data": {
            "dataset": "context",
            "augment": "none",
            "num_workers": 1,
            "options": {"length": 12000},
            "val_options": {"length": 256},
        },
        # AdamW: with SGD (lr 0.05-0.2) the tiny model learned to use the marker within 1500 iterations
        # on only some seeds; AdamW did on every seed tried
        "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 1e-4, "min_lr": 1e-5},
        "train": {
            "max_iters": 1500,
            "batch_size": 8,
            "val_interval": 500,
            "checkpoint_interval": 500,
            "keep_last": 2,
            "log_interval": 50,
            # one compute thread (+ one data worker): on a shared 2-core machine two threads per process
            # were up to 50x slower for this tiny model whenever another process was busy
            "num_threads": 1,
        },
    },
    # The video twin (`ccnet train video`, and `ccnet demo --video`): the tiny 3-D CCNet on the built-in video
    # task, clips of 5 frames whose cue is in one frame. R=3: each criss-cross hop moves along one axis (time,
    # row or column), so three reach every position of a clip. From scratch it learned the cue between 2000
    # and 3000 iterations (val mIoU 0.55 -> 0.97, seed 0); from the 2-D default run's weights
    # (model.pretrained=...) within 250.
    "video": {
        "name": "video",
        "model": {"name": "ccnet3d_tiny", "recurrence": 3, "clip_length": 5},
        "data": {
            "dataset": "context_video",
            "augment": "none",
            "num_workers": 1,
            "options": {"length": 6000, "clip_length": 5},
            "val_options": {"length": 128},
        },
        "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 1e-4, "min_lr": 1e-5},
        "train": {
            "max_iters": 3000,
            "batch_size": 4,
            "val_interval": 1000,
            "checkpoint_interval": 1000,
            "keep_last": 2,
            "log_interval": 50,
            "num_threads": 1,
        },
    },
}

# The repository's configs/ folder (present in a source checkout; configs can also be given as paths).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


# --- checking values against field types -------------------------------------------------------------
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", None) if origin is None else str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against (and normalised to) type ``tp``; ConfigError naming ``key`` otherwise."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        # "None" from a command line means null too (YAML reads only null / ~ as None)
        if type(None) in args and (value is None or value in ("None", "none")):
            return None
        for arm in args:
            if arm is type(None):
                continue
            try:
                return _coerce(value, arm, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list ({_type_name(tp)}), got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values ({_type_name(tp)}), got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{key}.{k}") if args else v for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # "1e-4": YAML 1.1 reads floats without a dot as strings
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{key}: unsupported field type {tp!r}")  # a bug in the dataclasses above


def _build(cls: type, values: Mapping[str, Any], prefix: str = "") -> Any:
    """Instantiate dataclass ``cls`` from a (partial) mapping, checking every key and value."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else str(key)
            section = f"'{prefix}'" if prefix else "the top level"
            raise ConfigError(f"unknown config key '{where}'; valid keys in {section}: {', '.join(names)}")
    kwargs = {}
    for name in names:
        if name in values:
            kwargs[name] = _coerce(values[name], hints[name], f"{prefix}.{name}" if prefix else name)
    return cls(**kwargs)


def config_from_dict(values: Mapping[str, Any]) -> Config:
    """A :class:`Config` from a nested mapping (missing keys keep their defaults)."""
    return _build(Config, values)


def config_to_dict(config: Config) -> dict[str, Any]:
    """Nested plain dict (tuples as lists), suitable for YAML and ``torch.save``."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))


# --- files and overrides -----------------------------------------------------------------------------
def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict update (mappings merged key by key, anything else replaced)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path}: expected a mapping at the top level, got {type(data).__name__}"
        )
    return data


def resolve_config_path(name_or_path: str | Path) -> Path | str:
    """A config file path, or the name of a built-in config (``"default"``).

    Accepts a path, a file name in the repository's ``configs/`` folder with or without ``.yaml``, or a key
    of :data:`BUILTIN_CONFIGS`.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (CONFIG_DIR / path.name, CONFIG_DIR / f"{path.name}.yaml"):
        if path.parent == Path(".") and candidate.is_file():
            return candidate
    if str(name_or_path) in BUILTIN_CONFIGS:
        return str(name_or_path)
    known = sorted({*BUILTIN_CONFIGS, *(p.stem for p in CONFIG_DIR.glob("*.yaml"))})
    raise ConfigError(f"config {str(name_or_path)!r} is neither a file nor a known config; known: {known}")


def _load_layers(source: str | Path | Mapping[str, Any] | None) -> dict[str, Any]:
    """The merged mapping of a config file (with its ``base:``) or a built-in config; {} for None."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return dict(source)
    resolved = resolve_config_path(source)
    if isinstance(resolved, str):
        return dict(BUILTIN_CONFIGS[resolved])
    data = _read_yaml(resolved)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{resolved}: 'base' must be a file path, got {base!r}")
    base_path = (resolved.parent / base).resolve()
    base_data = _read_yaml(base_path)
    if "base" in base_data:
        raise ConfigError(
            f"{resolved}: its base {base_path} has a base of its own; only one level of 'base:' is allowed"
        )
    return _merge(base_data, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=0.02"`` -> (``["optim", "lr"]``, ``0.02``); the value is read with ``yaml.safe_load``."""
    key, sep, raw = text.partition("=")
    key = key.strip().removeprefix("--")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: expected key.sub=value (e.g. optim.lr=0.02)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: the value is not valid YAML: {err}") from err
    return key.split("."), value


def load_config(
    source: str | Path | Mapping[str, Any] | None = None, overrides: Sequence[str] = ()
) -> Config:
    """Dataclass defaults <- ``source`` <- ``a.b=value`` overrides.

    ``source``: a config file, a config name (see :func:`resolve_config_path`), a nested mapping of values,
    or None (the dataclass defaults).

    Raises:
        ConfigError: missing or invalid file, more than one level of ``base:``, an unknown key or a value
            of the wrong type (the message names the dotted key).
    """
    values = _load_layers(source)
    for text in overrides:
        path, value = parse_override(text)
        update: Any = value
        for part in reversed(path):
            update = {part: update}
        values = _merge(values, update)
    return config_from_dict(values)


def save_config(config: Config, path: str | Path) -> Path:
    """Write the resolved config as YAML (loadable again with :func:`load_config`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    return path
