"""The model behind the app: weights from a run folder, a weights file or a zoo name, or an untrained
architecture; its classes and colours; the backend copies (fast, fast-bf16) made once and kept.

With no weights at all the app shows ``ccnet_tiny`` with seeded random weights and the built-in context
task's classes (the project ships no trained weights, and the app trains nothing): the page then says
that the labels are meaningless and how to train the tiny model in about two minutes (``ccnet train``),
while the attention explorer already shows the mechanism, the cross of loop 1 and the whole-image reach of
loop 2, on any input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["DEFAULT_MODEL", "AppModel", "WeightsError", "backends", "load_app_model", "resolve_weights"]

DEFAULT_MODEL = "ccnet_tiny"
UNTRAINED_SEED = 0


class WeightsError(ValueError):
    """Weights that cannot be used: missing, unreadable, for another model, or not downloadable (offline)."""


def backends() -> tuple[str, ...]:
    """The backends this machine offers: torch, fast and, where the CPU has native bf16, fast-bf16."""
    from ccnet.deploy.fast import cpu_supports_bf16

    return ("torch", "fast", "fast-bf16") if cpu_supports_bf16() else ("torch", "fast")


def resolve_weights(weights: str) -> str:
    """A run folder -> its exported ``model.safetensors``, else its latest ``iter_*.pt`` checkpoint; other
    values (files, zoo names, URLs) unchanged.

    Raises:
        WeightsError: a folder that holds neither.
    """
    path = Path(weights).expanduser()
    if not path.is_dir():
        return weights
    exported = path / "model.safetensors"
    if exported.is_file():
        return str(exported)
    from ccnet.engine.checkpoint import CheckpointManager

    latest = CheckpointManager(path, clean=False).latest()
    if latest is None:
        raise WeightsError(
            f"weights {weights}: this folder holds no model.safetensors and no iter_*.pt checkpoint"
        )
    return str(latest)


@dataclass
class AppModel:
    """A loaded segmentation model and what the page shows about it.

    ``model``: the plain torch model (eval mode; the attention explorer records its forward pass);
    ``classes``, ``palette``: one name and RGB colour per class; ``description``: one line for the page;
    ``trained``: False for random weights (the page warns).
    """

    model: nn.Module
    name: str
    classes: list[str]
    palette: list[tuple[int, int, int]]
    description: str
    trained: bool = True
    _runners: dict[str, nn.Module] = field(default_factory=dict, repr=False)

    @property
    def has_attention(self) -> bool:
        from ccnet.ops import RecurrentCrissCrossAttention

        return any(isinstance(m, RecurrentCrissCrossAttention) for m in self.model.modules())

    @property
    def video(self) -> bool:
        return getattr(self.model, "clip_length", None) is not None

    def runner(self, backend: str) -> nn.Module:
        """The module that segments with ``backend`` ("torch", "fast", "fast-bf16"); made once."""
        if backend == "torch":
            return self.model
        if backend not in ("fast", "fast-bf16"):
            raise ValueError(f"backend: expected one of torch, fast, fast-bf16, got {backend!r}")
        if backend not in self._runners:
            import warnings

            from ccnet.deploy.fast import optimize_for_inference

            with warnings.catch_warnings():  # emulated bf16 warns; the page only offers it where native
                warnings.simplefilter("ignore", RuntimeWarning)
                self._runners[backend] = optimize_for_inference(self.model, bf16=backend == "fast-bf16")
        return self._runners[backend]


def _colours_and_names(
    model: nn.Module, info: dict[str, Any]
) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Class names and colours: the weights' own, else their zoo dataset's, else ``class i`` and the VOC
    colour map."""
    from ccnet.data import dataset_class
    from ccnet.data.meta import voc_colormap

    k = model.num_classes
    classes, palette = info.get("classes"), info.get("palette")
    entry = getattr(model, "pretrained_cfg", None)
    if entry is not None and (classes is None or palette is None):
        meta = dataset_class({"voc12aug": "voc"}.get(entry.dataset, entry.dataset)).meta
        classes, palette = classes or meta.classes, palette or meta.palette
    classes = list(classes or [f"class {i}" for i in range(k)])
    palette = [tuple(int(v) for v in c) for c in (palette or voc_colormap(k))]
    return classes, palette


def load_app_model(weights: str | os.PathLike | None = None, name: str | None = None) -> AppModel:
    """The app's model: ``weights`` (run folder, weights file, zoo name or URL) with ``name`` when the
    weights do not name their architecture; no weights: ``name`` (default ``ccnet_tiny``) untrained, with
    the built-in context task's classes.

    Raises:
        WeightsError: naming the weights and what is wrong (missing, unreadable, another architecture,
            not downloadable).
    """
    from ccnet.config import ConfigError
    from ccnet.engine.setup import load_model

    if not weights:
        return _untrained(name or DEFAULT_MODEL)
    weights = resolve_weights(str(weights))
    try:
        model, info = load_model(weights, name=name or None)
    except (OSError, ValueError, RuntimeError, ConfigError) as err:  # offline zoo names: WeightsDownloadError
        reason = str(err)
        raise WeightsError(reason if str(weights) in reason else f"weights {weights}: {reason}") from err
    classes, palette = _colours_and_names(model, info)
    arch = getattr(model, "arch", None) or name or "model"
    return AppModel(model, arch, classes, palette, f"{arch} with weights {weights}")


def _untrained(name: str) -> AppModel:
    from ccnet.data import ContextDataset
    from ccnet.models import create_model

    meta = ContextDataset.meta
    torch.manual_seed(UNTRAINED_SEED)
    try:
        model = create_model(name, num_classes=meta.num_classes).eval()
    except (ValueError, TypeError) as err:
        raise WeightsError(f"model {name!r}: {err}") from err
    return AppModel(
        model,
        name,
        list(meta.classes),
        [tuple(c) for c in meta.palette],
        f"{name}, untrained (random weights, seed {UNTRAINED_SEED}), classes of the built-in context task",
        trained=False,
    )
