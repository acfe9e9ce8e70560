"""The model registry: registered names -> :class:`ModelEntry` (bookkeeping only; the registered
architectures are listed in :mod:`ccnet.models.catalog`, models are built by
:func:`ccnet.models.factory.create_model`)."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from ccnet.models.architecture import Architecture

if TYPE_CHECKING:
    from ccnet.models.maskrcnn import InstanceArchitecture

__all__ = ["TASKS", "ModelEntry", "get_model_entry", "list_models", "register_model"]


@dataclass(frozen=True)
class ModelEntry:
    """A registered model.

    Attributes:
        name: the name ``create_model`` takes.
        build: ``build(architecture, num_classes)`` -> the network with random weights.
        architecture: its defaults; ``create_model`` keyword arguments override them.
        description: one line for listings.
        weights_from: for video models, the 2-D architecture whose weights (zoo entries, saved files) they
            also load, inflated (:func:`ccnet.models.convert.inflate_2d_state_dict`); else None.
        task: ``"semantic"`` (per-pixel logits, an :class:`Architecture`) or ``"instance"`` (detections and
            masks: Mask R-CNN, an :class:`~ccnet.models.maskrcnn.InstanceArchitecture`).
    """

    name: str
    build: Callable[[Architecture, int], nn.Module] | Callable[[InstanceArchitecture, int], nn.Module]
    architecture: Architecture | InstanceArchitecture
    description: str
    weights_from: str | None = None
    task: str = "semantic"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"model {self.name!r}: task {self.task!r}; allowed: {list(TASKS)}")

    def fits_weights_of(self, arch: str) -> bool:
        """Whether weights saved for registered architecture ``arch`` load into this model."""
        return arch in (self.name, self.weights_from)


TASKS = ("semantic", "instance")
_MODELS: dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry) -> ModelEntry:
    """Register ``entry`` under its name; a name can be registered once."""
    if entry.name in _MODELS:
        raise ValueError(f"model {entry.name!r} is already registered")
    if entry.weights_from is not None and entry.weights_from not in _MODELS:
        raise ValueError(f"model {entry.name!r}: weights_from={entry.weights_from!r} is not registered (yet)")
    _MODELS[entry.name] = entry
    return entry


def list_models(pattern: str = "*") -> list[str]:
    """Sorted registered model names matching a shell-style ``pattern`` (e.g. ``"ccnet_*"``)."""
    return sorted(name for name in _MODELS if fnmatch.fnmatch(name, pattern))


def get_model_entry(name: str) -> ModelEntry:
    """The entry registered as ``name``; an unknown name raises ValueError listing close names."""
    try:
        return _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_MODELS), n=5, cutoff=0.4)
        hint = f"did you mean {close}?" if close else f"available: {list_models()}"
        raise ValueError(f"unknown model {name!r}; {hint}") from None
