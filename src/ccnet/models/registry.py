"""Model registry: ``@register_model`` on builder functions, ``list_models`` and ``create_model``."""

from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from torch import nn

if TYPE_CHECKING:
    from ccnet.models.ccnet import CCNet

__all__ = ["create_model", "get_model_builder", "list_models", "register_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_Builder = TypeVar("_Builder", bound=Callable[..., nn.Module])


def register_model(builder: _Builder) -> _Builder:
    """Register a builder function under its own name (the name ``create_model`` takes)."""
    if builder.__name__ in _MODELS:
        raise ValueError(f"model {builder.__name__!r} is already registered")
    _MODELS[builder.__name__] = builder
    return builder


def list_models(pattern: str = "*") -> list[str]:
    """Sorted registered model names matching a shell-style ``pattern`` (e.g. ``"ccnet_*"``)."""
    return sorted(name for name in _MODELS if fnmatch.fnmatch(name, pattern))


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    """The builder registered as ``name``; an unknown name raises ValueError listing close names."""
    try:
        return _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_MODELS), n=5, cutoff=0.4)
        hint = f"did you mean {close}?" if close else f"available: {list_models()}"
        raise ValueError(f"unknown model {name!r}; {hint}") from None


def _is_zoo_name(pretrained: str | os.PathLike) -> bool:
    from ccnet.models.convert import SOURCES

    text = str(pretrained)
    return ":" in text and text.split(":", 1)[0] in SOURCES and not os.path.exists(text)


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    pretrained: str | os.PathLike | None = None,
    new_classifier: bool = False,
    **overrides: Any,
) -> CCNet:
    """Build a registered model, optionally with weights.

    Args:
        name: a registered name (``list_models()``), e.g. ``"ccnet_r50_d8"``.
        num_classes: K. Optional when ``pretrained`` tells it (zoo entry or classifier shape).
        pretrained: a zoo name (``"mmseg:ccnet_r50-d8_769x769_80k_cityscapes"``, see ``list_weights()``),
            a local file or a URL (mmseg, SSSeg, authors' or our layout, detected from the keys).
            Downloads go to the torch hub cache; weights are converted and loaded strictly. A video model
            (``ccnet3d_*``) also takes the weights of its 2-D twin (``ccnet.models.video.TWINS_2D``),
            inflated by :func:`ccnet.models.video.inflate_2d_state_dict`.
        new_classifier: fine-tuning to another class set: load everything from ``pretrained`` but the
            classifiers (``head.classifier``, ``aux_head.classifier``), which keep their random
            initialisation for ``num_classes`` classes; the weights' test protocol (``pretrained_cfg``) is
            then not adopted, their input normalisation is.
        **overrides: builder arguments (``recurrence``, ``activation``, ``aux_channels``, ``align_corners``,
            ``backbone``, ``norm``, ``backbone_weights``, ...; see :func:`ccnet.models.ccnet.build_ccnet`).
            ``None`` values are ignored, so unset CLI options never override defaults.

    Raises:
        ValueError: unknown name (close names listed), weights for another architecture, no class count.
        ccnet.models.convert.CheckpointMismatchError: the weights do not fit (keys listed).

    >>> import torch
    >>> model = create_model("ccnet_r50_d8", num_classes=19)
    >>> model.eval()(torch.zeros(1, 3, 64, 64)).out.shape
    torch.Size([1, 19, 64, 64])
    """
    from ccnet.models.convert import convert_checkpoint, load_checkpoint_strict
    from ccnet.models.video import TWINS_2D, inflate_2d_state_dict
    from ccnet.models.weights import cached_download, read_weights
    from ccnet.models.zoo import get_weights

    builder = get_model_builder(name)
    fitting_archs = (name, TWINS_2D[name]) if name in TWINS_2D else (name,)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    entry = None
    state = None
    if pretrained is not None:
        if _is_zoo_name(pretrained):
            entry = get_weights(str(pretrained))
            if entry.arch not in fitting_archs:
                raise ValueError(f"weights {entry.name!r} are for architecture {entry.arch!r}, not {name!r}")
            if num_classes is not None and num_classes != entry.num_classes and not new_classifier:
                raise ValueError(
                    f"weights {entry.name!r} have {entry.num_classes} classes ({entry.dataset}), "
                    f"num_classes={num_classes} asked"
                )
            checkpoint, _ = read_weights(cached_download([entry.url, *entry.mirrors]))
            state = convert_checkpoint(checkpoint, entry.source)
            overrides = {**entry.model_kwargs, **overrides}
        else:
            checkpoint, meta = read_weights(pretrained)
            if meta.get("arch") not in (None, *fitting_archs):
                raise ValueError(f"weights {pretrained} are for architecture {meta['arch']!r}, not {name!r}")
            state = convert_checkpoint(checkpoint, "auto")
        if num_classes is None and "head.classifier.weight" in state:
            num_classes = int(state["head.classifier.weight"].shape[0])
    if new_classifier and pretrained is None:
        raise ValueError(f"create_model({name!r}): new_classifier=True needs pretrained weights to fine-tune")
    if num_classes is None:
        raise ValueError(f"create_model({name!r}): num_classes is required (no pretrained weights tell it)")
    model = builder(num_classes=num_classes, **overrides)
    if state is not None:
        if name in TWINS_2D:
            state = inflate_2d_state_dict(state, model)
        if new_classifier:
            fresh = model.state_dict()
            classifiers = [k for k in fresh if k.startswith(("head.classifier.", "aux_head.classifier."))]
            state = {**state, **{k: fresh[k] for k in classifiers}}
        load_checkpoint_strict(model, state, what=f"weights {pretrained}")
    model.arch = name
    model.pretrained_cfg = None if new_classifier else entry
    if entry is not None:
        model.preprocess = entry.preprocess
    return model
