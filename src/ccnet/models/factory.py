"""The one place that builds models and loads weights into them: :func:`create_model`.

Weights come from a zoo name (downloaded into the torch hub cache), a local file or a URL, in any published
layout (converted by :mod:`ccnet.models.convert`); a video model also takes the weights of its 2-D twin
(inflated); with ``new_classifier`` everything but the classifiers is loaded (fine-tuning to another class
set). Backbone-only ImageNet weights (``backbone_weights``) are loaded here too, when no whole-model weights
are given.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from ccnet.models.architecture import Architecture
from ccnet.models.convert import (
    SOURCES,
    convert_backbone_checkpoint,
    convert_checkpoint,
    inflate_2d_state_dict,
    load_checkpoint_strict,
)
from ccnet.models.registry import get_model_entry
from ccnet.models.weights import cached_download, read_weights
from ccnet.models.zoo import IMAGENET_WEIGHTS, ZOO, WeightsEntry, get_weights

if TYPE_CHECKING:
    from ccnet.models.ccnet import CCNet

__all__ = ["Pretrained", "create_model", "read_pretrained"]

_CLASSIFIERS = ("head.classifier.", "aux_head.classifier.", "head.decoder.classifier.")


@dataclass(frozen=True)
class Pretrained:
    """Whole-model weights in our layout, and what their source tells about them.

    Attributes:
        location: the zoo name, path or URL they were read from.
        state: the state dict (our key names).
        arch: the registered architecture they were saved for, when the source says (zoo entry, our files).
        zoo_entry: the zoo entry, for zoo names.
        meta: the string metadata of our files (``arch``, ``model_overrides``, ``classes``, ``palette``, and
            ``zoo``, ``test_protocol`` for files converted from a zoo entry).
    """

    location: str
    state: dict[str, Tensor]
    arch: str | None = None
    zoo_entry: WeightsEntry | None = None
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int | None:
        """K, read from the classifier's shape (Mask R-CNN weights: K + 1, the background included)."""
        weight = self.state.get("head.classifier.weight")
        if weight is None:
            weight = self.state.get("roi_heads.box_predictor.cls_score.weight")
        return None if weight is None else int(weight.shape[0])

    @property
    def saved_overrides(self) -> dict[str, Any]:
        """The ``create_model`` overrides a training run saved with the weights (``model_overrides``)."""
        return json.loads(self.meta.get("model_overrides", "{}"))


def _is_zoo_name(location: str | os.PathLike) -> bool:
    text = str(location)
    return ":" in text and text.split(":", 1)[0] in SOURCES and not os.path.exists(text)


def read_pretrained(location: str | os.PathLike) -> Pretrained:
    """Read whole-model weights: a zoo name (``"mmseg:ccnet_r50-d8_769x769_80k_cityscapes"``, see
    ``list_weights()``), a local file or a URL (mmseg, SSSeg, authors' or our layout, detected from the keys).

    Raises:
        FileNotFoundError: no such file. ValueError: an unknown zoo name (close names listed) or an unreadable
        file. ccnet.models.convert.CheckpointMismatchError: keys of no known layout (listed).
    """
    if _is_zoo_name(location):
        entry = get_weights(str(location))
        checkpoint, _ = read_weights(cached_download([entry.url, *entry.mirrors]))
        return Pretrained(str(location), convert_checkpoint(checkpoint, entry.source), entry.arch, entry)
    checkpoint, meta = read_weights(location)
    from ccnet.models.convert import unwrap_state_dict
    from ccnet.models.maskrcnn import is_detection_state_dict, upgrade_legacy_keys

    tensors = unwrap_state_dict(checkpoint)
    if is_detection_state_dict(tensors):  # torchvision's Mask R-CNN layout (published COCO files, ours)
        return Pretrained(str(location), upgrade_legacy_keys(tensors), meta.get("arch"), None, meta)
    state = convert_checkpoint(checkpoint, "auto")
    # A file converted from a zoo entry names it (``ccnet convert``): its test protocol and normalisation
    # come with it, as with the zoo name itself.
    zoo = ZOO.get(meta.get("zoo", ""))
    return Pretrained(str(location), state, meta.get("arch") or (zoo.arch if zoo else None), zoo, meta)


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    pretrained: str | os.PathLike | Pretrained | None = None,
    new_classifier: bool = False,
    **overrides: Any,
) -> CCNet:
    """Build a registered model, optionally with weights.

    Args:
        name: a registered name (``list_models()``), e.g. ``"ccnet_r50_d8"``; instance models
            (``maskrcnn_*``) are built by :func:`ccnet.models.maskrcnn.create_instance_model`: their
            ``pretrained`` is torchvision's Mask R-CNN layout (published COCO checkpoints, our saved weights),
            their ``num_classes`` counts the background (COCO: 91) and their overrides are fields of
            :class:`~ccnet.models.maskrcnn.InstanceArchitecture`.
        num_classes: K. Optional when ``pretrained`` tells it (zoo entry or classifier shape).
        pretrained: a zoo name (``"mmseg:ccnet_r50-d8_769x769_80k_cityscapes"``, see ``list_weights()``),
            a local file or a URL (see :func:`read_pretrained`), or weights already read. Loaded strictly. A
            video model (``ccnet3d_*``) also takes the weights of its 2-D twin, inflated by
            :func:`ccnet.models.convert.inflate_2d_state_dict`.
        new_classifier: fine-tuning to another class set: load everything from ``pretrained`` but the
            classifiers (``head.classifier``, ``aux_head.classifier``), which keep their random
            initialisation for ``num_classes`` classes; the weights' test protocol (``pretrained_cfg``) is
            then not adopted, their input normalisation is.
        **overrides: fields of the model's :class:`~ccnet.models.architecture.Architecture` (``backbone``,
            ``output_stride``, ``norm``, ``backbone_weights``, ``align_corners``, ``clip_length``,
            ``frames``) and of its :class:`~ccnet.models.architecture.HeadConfig` (``recurrence``,
            ``reduction``, ``channels``, ``activation``, ``dropout``, ``aux``, ``aux_channels``,
            ``context``). ``None`` values are ignored, so unset options never override defaults.

    Raises:
        ValueError: unknown name or option (valid ones listed), weights for another architecture, no class
            count.
        ccnet.models.convert.CheckpointMismatchError: the weights do not fit (keys listed).

    >>> import torch
    >>> model = create_model("ccnet_r50_d8", num_classes=19)
    >>> model.eval()(torch.zeros(1, 3, 64, 64)).out.shape
    torch.Size([1, 19, 64, 64])
    """
    entry = get_model_entry(name)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if entry.task == "instance":  # Mask R-CNN: torchvision's layout, no zoo entries
        from ccnet.models.maskrcnn import create_instance_model

        weights = pretrained
        if weights is not None and not isinstance(weights, Pretrained):
            weights = read_pretrained(weights)
        if weights is not None and weights.arch is not None and not entry.fits_weights_of(weights.arch):
            raise ValueError(
                f"weights {weights.location} are for architecture {weights.arch!r}, not {name!r}"
            )
        return create_instance_model(
            entry,
            num_classes=num_classes,
            pretrained=weights,
            new_classifier=new_classifier,
            overrides=overrides,
        )
    zoo = pretrained.zoo_entry if isinstance(pretrained, Pretrained) else None
    if zoo is None and pretrained is not None and _is_zoo_name(pretrained):
        zoo = get_weights(str(pretrained))
    if zoo is not None:  # checked before anything is downloaded
        if not entry.fits_weights_of(zoo.arch):
            raise ValueError(f"weights {zoo.name!r} are for architecture {zoo.arch!r}, not {name!r}")
        if num_classes is not None and num_classes != zoo.num_classes and not new_classifier:
            raise ValueError(
                f"weights {zoo.name!r} have {zoo.num_classes} classes ({zoo.dataset}), "
                f"num_classes={num_classes} asked"
            )
        overrides = {"preprocess": zoo.preprocess, **zoo.model_kwargs, **overrides}
    weights = pretrained
    if weights is not None and not isinstance(weights, Pretrained):
        weights = read_pretrained(weights)
    if weights is not None:
        if weights.arch is not None and not entry.fits_weights_of(weights.arch):
            raise ValueError(
                f"weights {weights.location} are for architecture {weights.arch!r}, not {name!r}"
            )
        if num_classes is None:
            num_classes = weights.num_classes
    elif new_classifier:
        raise ValueError(f"create_model({name!r}): new_classifier=True needs pretrained weights to fine-tune")
    if num_classes is None:
        raise ValueError(f"create_model({name!r}): num_classes is required (no pretrained weights tell it)")
    architecture = entry.architecture.with_overrides(**overrides)
    model = entry.build(architecture, num_classes)
    if weights is None:  # whole-model weights replace every backbone tensor anyway
        _load_backbone_weights(model.backbone, architecture)
    else:
        state = weights.state
        if entry.weights_from is not None:
            state = inflate_2d_state_dict(state, model)
        if new_classifier:
            fresh = model.state_dict()
            state = {**state, **{k: v for k, v in fresh.items() if k.startswith(_CLASSIFIERS)}}
        load_checkpoint_strict(model, state, what=f"weights {weights.location}")
    model.arch = name
    model.pretrained_cfg = None if new_classifier else zoo
    return model


def _load_backbone_weights(backbone: nn.Module, architecture: Architecture) -> None:
    """ImageNet weights from a file, a URL or open-mmlab's release into ``backbone`` (timm's own weights,
    ``"timm"``, were loaded when it was built)."""
    location = architecture.backbone_weights
    if location in (None, "timm"):
        return
    if location == "open-mmlab":
        if architecture.backbone not in IMAGENET_WEIGHTS:
            raise ValueError(f"backbone_weights='open-mmlab': available for {sorted(IMAGENET_WEIGHTS)} only")
        location = str(cached_download(IMAGENET_WEIGHTS[architecture.backbone]))
    checkpoint, _ = read_weights(location)
    load_checkpoint_strict(
        backbone, convert_backbone_checkpoint(checkpoint), what=f"backbone weights {location}"
    )
