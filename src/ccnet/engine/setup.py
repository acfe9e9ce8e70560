"""From a run config and weights to what the engine runs: the config of an evaluation (a zoo name, the run's
own ``config.yaml`` or a given config), its dataset split, its :class:`~ccnet.engine.inference.Segmenter`,
and a model with weights loaded from a weights file, checkpoint or zoo name.

Used by ``ccnet eval | predict | export``, training's validation and ``benchmarks/precision.py``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ccnet.config import DEFAULT_CONFIG, Config, ConfigError, load_config
from ccnet.data import DatasetMeta, SegmentationDataset, get_dataset
from ccnet.engine.evaluate import build_segmenter, raw_pair
from ccnet.engine.inference import Segmenter

__all__ = ["config_segmenter", "eval_dataset", "load_model", "resolve_config", "zoo_config"]

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


def load_model(
    weights: str | os.PathLike,
    *,
    name: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    device: torch.device | str = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """Build a registered model and load ``weights`` into it; returns (model in eval mode, info).

    ``weights`` is a zoo name (``mmseg:...``), a training checkpoint or exported weights of ours (which name
    their architecture and overrides), or a published checkpoint file (then ``name`` is required). ``info``
    holds what the file tells about the data: ``classes`` and ``palette`` (or None).

    Raises:
        FileNotFoundError: the weights file does not exist.
        ValueError: no architecture known, or the weights do not fit it.
    """
    from ccnet.models import create_model, read_pretrained

    pretrained = read_pretrained(weights)
    arch = name or pretrained.arch
    if arch is None:
        raise ValueError(f"{weights} does not name its architecture; pass the model name (--model)")
    kwargs = {**pretrained.saved_overrides, **dict(overrides or {})}
    model = create_model(arch, pretrained=pretrained, **kwargs)
    meta = pretrained.meta
    info = {
        "classes": tuple(json.loads(meta["classes"])) if "classes" in meta else None,
        "palette": tuple(tuple(c) for c in json.loads(meta["palette"])) if "palette" in meta else None,
    }
    return model.to(device).eval(), info
