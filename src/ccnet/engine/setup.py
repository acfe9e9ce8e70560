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
from ccnet.data import DatasetMeta, SegmentationDataset
from ccnet.engine.evaluate import build_segmenter
from ccnet.engine.inference import Segmenter
from ccnet.engine.loader import build_split
from ccnet.models.weights import is_url

__all__ = [
    "WeightsDatasetMismatchError",
    "check_weights_fit_dataset",
    "config_segmenter",
    "describe_weights",
    "eval_dataset",
    "load_model",
    "model_choice",
    "resolve_config",
    "zoo_config",
]


class WeightsDatasetMismatchError(ConfigError):
    """The weights predict other classes than the dataset labels (count or names): names both."""


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
    if source is None and (run_config := _run_config_of(weights)) is not None:
        source = str(run_config)
    if source is None and (zoo := _zoo_named_by(weights)):  # converted from a zoo entry: its protocol
        return load_config(zoo_config(zoo), overrides), weights
    return load_config(source or DEFAULT_CONFIG, overrides), weights


def _run_config_of(weights: str) -> Path | None:
    """The ``config.yaml`` of the training run a weights file belongs to (beside it), if any."""
    if is_url(weights):
        return None
    path = Path(weights).parent / "config.yaml"
    return path if path.is_file() else None


def _zoo_named_by(weights: str) -> str | None:
    """The zoo entry a weights file was converted from (``ccnet convert`` writes it as ``zoo``), if any."""
    from ccnet.models import ZOO
    from ccnet.models.weights import read_weights

    path = Path(weights)
    if is_url(weights) or not path.is_file():
        return None
    try:
        if path.suffix == ".safetensors":  # the header alone: no tensor is read
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
        else:
            _, meta = read_weights(path)
    except Exception:  # an unreadable file: load_model reports it, naming the file
        return None
    name = meta.get("zoo")
    return name if name in ZOO else None


def model_choice(
    config: Config, source: str | None, overrides: list[str], weights: str
) -> tuple[str | None, dict[str, Any]]:
    """(model name, ``create_model`` overrides) that the user chose for ``weights``, for :func:`load_model`.

    A given config, a zoo name or the ``config.yaml`` of the weights' run names the model. The built-in
    default config does not: then the weights' own architecture and saved overrides win (a file written by
    ``ccnet convert --arch ccnet_r50_d8`` is not loaded into the default ``ccnet_tiny``), and only what the
    command line sets (``model.name=...``, ``model.recurrence=...``) is taken. Name None = the weights'.
    """
    from ccnet.models import ZOO

    named_by_config = source is not None or weights in ZOO or _run_config_of(weights) is not None
    if named_by_config:
        return config.model.name, config.model.overrides()
    given = {item.split("=", 1)[0].strip() for item in overrides}
    name = config.model.name if "model.name" in given else None
    return name, {k: v for k, v in config.model.overrides().items() if f"model.{k}" in given}


def eval_dataset(config: Config, split: str) -> SegmentationDataset:
    """The ``split`` of the config's dataset with raw ``uint8`` items (evaluation input); options checked as
    for training (:func:`ccnet.engine.loader.build_split`).

    Raises:
        ConfigError: ``data.options`` / ``data.val_options`` hold an option the dataset does not take (e.g.
            the default config's ``length`` of the built-in dataset, with ``data.dataset=folder``).
        ccnet.data.DatasetError: a missing or malformed dataset (names the file or folder).
    """
    return build_split(config.data, split, evaluation=True)


def _class_list(classes: Any) -> str:
    names = list(classes)
    shown = ", ".join(map(str, names[:8])) + (", ..." if len(names) > 8 else "")
    return f"{len(names)} classes [{shown}]"


def check_weights_fit_dataset(
    model: nn.Module, info: Mapping[str, Any], meta: DatasetMeta, weights: str | os.PathLike
) -> None:
    """Refuse to score weights on a dataset of other classes: another class count, or other class names
    when both the weights' metadata and the dataset know them (a score would be meaningless).

    Raises:
        WeightsDatasetMismatchError: naming the weights and the dataset, with both class lists.
    """
    names = info.get("classes")
    weights_classes = _class_list(names) if names else f"{model.num_classes} classes"
    if model.num_classes != meta.num_classes or (names and tuple(names) != tuple(meta.classes)):
        raise WeightsDatasetMismatchError(
            f"weights {weights} predict {weights_classes} but dataset {meta.name!r} has "
            f"{_class_list(meta.classes)}; evaluate them on their own dataset (data.dataset=...) or use "
            "weights trained for this one"
        )


def config_segmenter(model: nn.Module, config: Config, meta: DatasetMeta) -> Segmenter:
    """A Segmenter with the config's evaluation protocol; crop and test scale default to the training crop
    and the dataset's test scale."""
    return build_segmenter(
        model,
        config.eval,
        default_crop=config.data.crop_size or meta.crop_size,
        default_test_scale=meta.test_scale,
        flip_pairs=meta.flip_pairs,
    )


def describe_weights(pretrained: Any) -> str:
    """What a weights file is, for messages: ``architecture 'ccnet_r50_d8', 19 classes [road, ...]``."""
    arch = f"architecture {pretrained.arch!r}" if pretrained.arch else "no architecture named"
    classes = _weights_info(pretrained.meta)["classes"]
    count = pretrained.num_classes
    if classes:
        return f"{arch}, {_class_list(classes)}"
    return f"{arch}, {count} classes" if count is not None else arch


def _weights_info(meta: Mapping[str, str]) -> dict[str, Any]:
    """``classes`` and ``palette`` from our files' string metadata (None where absent or unreadable)."""

    def parse(key: str) -> Any:
        try:
            return json.loads(meta[key]) if key in meta else None
        except ValueError:  # metadata written by someone else: treat as absent rather than fail
            return None

    classes, palette = parse("classes"), parse("palette")
    return {
        "classes": tuple(map(str, classes)) if isinstance(classes, list) else None,
        "palette": tuple(tuple(c) for c in palette) if isinstance(palette, list) else None,
    }


def load_model(
    weights: str | os.PathLike,
    *,
    name: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    device: torch.device | str = "cpu",
    fallback_name: str | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Build a registered model and load ``weights`` into it; returns (model in eval mode, info).

    ``weights`` is a zoo name (``mmseg:...``), a URL, a training checkpoint or exported weights of ours (which
    name their architecture and overrides), or a published checkpoint file (then ``name`` or
    ``fallback_name`` is required). ``name`` (chosen by the user) wins over the architecture the weights
    name, which wins over ``fallback_name`` (a default config's model). ``info`` holds what the file tells
    about the data: ``classes`` and ``palette`` (or None).

    Raises:
        FileNotFoundError: the weights file does not exist.
        ccnet.models.weights.WeightsFileError: an empty, truncated or unreadable file (named).
        ConfigError: no architecture known, or ``name`` is another architecture than the weights name.
        ccnet.models.convert.CheckpointMismatchError: the weights do not fit the model (the message says
            what the file is against the model, with a few example keys).
    """
    from ccnet.models import create_model, read_pretrained
    from ccnet.models.convert import CheckpointMismatchError
    from ccnet.models.registry import get_model_entry

    pretrained = read_pretrained(weights)
    arch = name or pretrained.arch or fallback_name
    if arch is None:
        raise ConfigError(f"{weights} does not name its architecture; pass the model name (--model)")
    if name and pretrained.arch and not get_model_entry(name).fits_weights_of(pretrained.arch):
        raise ConfigError(
            f"weights {weights} ({describe_weights(pretrained)}) do not fit model {name!r}, another "
            "architecture; drop the model name (--model / model.name) to use theirs"
        )
    kwargs = {**pretrained.saved_overrides, **dict(overrides or {})}
    try:
        model = create_model(arch, pretrained=pretrained, **kwargs)
    except CheckpointMismatchError as err:
        detail = str(err).split("; ", 1)[-1]  # the key listing, after "... does not fit the model"
        options = ", ".join(f"{k}={v!r}" for k, v in sorted(kwargs.items()))
        raise CheckpointMismatchError(
            f"weights {weights} ({describe_weights(pretrained)}) do not fit model {arch!r}"
            + (f" ({options})" if options else "")
            + f": {detail}"
        ) from err
    return model.to(device).eval(), _weights_info(pretrained.meta)
