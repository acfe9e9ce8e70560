"""From a run config to what the engine runs: the config of an evaluation (a zoo name, the run's own
``config.yaml`` or a given config), its dataset split and its :class:`~ccnet.engine.inference.Segmenter`.

Used by ``ccnet eval``, training's validation and ``benchmarks/precision.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ccnet.config import DEFAULT_CONFIG, Config, ConfigError, load_config
from ccnet.data import DatasetMeta, SegmentationDataset, get_dataset
from ccnet.engine.evaluate import build_segmenter, raw_pair
from ccnet.engine.inference import Segmenter

__all__ = ["config_segmenter", "eval_dataset", "resolve_config", "zoo_config"]

_ZOO_DATASETS = {"voc12aug": "voc"}  # zoo dataset name -> ccnet.data name


def zoo_config(name: str) -> dict[str, Any]:
    """Config values (model, dataset, protocol) of the zoo entry ``name``."""
    from ccnet.models import get_weights

    entry = get_weights(name)
    config: dict[str, Any] = {
        "name": name.replace(":", "_"),
        "model": {"name": entry.arch, **entry.model_kwargs},
        "data": {
            "dataset": _ZOO_DATASETS.get(entry.dataset, entry.dataset),
            "crop_size": list(entry.crop_size),
        },
        "eval": {"mode": entry.test_mode},
    }
    if entry.test_scale:
        config["eval"]["test_scale"] = list(entry.test_scale)
    if entry.test_mode == "slide":
        config["eval"]["crop_size"] = list(entry.crop_size)
        config["eval"]["stride"] = list(entry.test_stride or entry.crop_size)
    return config


def resolve_config(source: str | None, overrides: list[str], weights: str | None) -> tuple[Config, str]:
    """(config, weights) of an evaluation: from a zoo name (as ``source`` or ``weights``), the given config,
    the ``config.yaml`` of the run the weights come from, or the default config.

    Raises:
        ConfigError: no weights given, or a bad config / override.
    """
    from ccnet.models import ZOO

    if source is None and weights in ZOO:
        source = weights
    if source is not None and source in ZOO:
        return load_config(zoo_config(source), overrides), weights or source
    if weights is None:
        raise ConfigError("--weights is required (a weights file, a training checkpoint or a zoo name)")
    if source is None and (Path(weights).parent / "config.yaml").is_file():
        source = str(Path(weights).parent / "config.yaml")
    return load_config(source or DEFAULT_CONFIG, overrides), weights


def eval_dataset(config: Config, split: str) -> SegmentationDataset:
    """The ``split`` of the config's dataset with raw ``uint8`` items (evaluation input)."""
    options = {**config.data.options, **config.data.val_options}
    return get_dataset(config.data.dataset, config.data.root, split, transforms=raw_pair, **options)


def config_segmenter(model: nn.Module, config: Config, meta: DatasetMeta) -> Segmenter:
    """A Segmenter with the config's evaluation protocol; crop and test scale default to the training crop
    and the dataset's test scale."""
    return build_segmenter(
        model,
        config.eval,
        default_crop=config.data.crop_size or meta.crop_size,
        default_test_scale=meta.test_scale,
    )
