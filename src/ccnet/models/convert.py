"""Convert published CCNet checkpoints (mmsegmentation, SSSegmentation, the authors' code) to our layout.

Our layout is the state dict of :class:`ccnet.models.CCNet`: ``backbone.*`` (timm ResNet names: ``conv1.0``,
``conv1.1``, ``conv1.3``, ``conv1.4``, ``conv1.6``, ``bn1``, ``layer{1-4}.*``), ``head.conv_in/context/
conv_out/bottleneck.{conv,norm}``, ``head.classifier``, ``aux_head.conv_in.{conv,norm}``,
``aux_head.classifier``. Each source is a list of full-match renaming rules; a key no rule matches is an
error (listing the keys), and :func:`load_checkpoint_strict` then checks every key and shape against the
model. Value changes, all exact:

* gamma: mmseg/SSSeg store a 0-dim ``gamma.scale``, the authors a shape-[1] ``gamma``: both become 0-dim.
* authors (InPlace-ABN): every BN applies ``|weight| + eps`` as its scale, so weights become
  ``|w| + 1e-5``; InPlace-ABN has no ``num_batches_tracked`` (set to 0). The aux conv ``dsn.0`` has a bias,
  which is folded into the following BN: ``BN(conv(x) + b)`` uses ``running_mean - b`` (exact in eval mode;
  in train mode the batch mean absorbs the constant either way).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "SOURCES",
    "CheckpointMismatchError",
    "convert_backbone_checkpoint",
    "convert_checkpoint",
    "detect_source",
    "inflate_2d_state_dict",
    "load_checkpoint_strict",
    "unwrap_state_dict",
]

_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_LAYER = r"(layer[1-4]\.\d+\.(?:conv[123]\.weight|bn[123]\.\w+|downsample\.0\.weight|downsample\.1\.\w+))"
_INPLACE_ABN_EPS = 1e-5  # InPlace-ABN's default eps, used by the authors' code

# mmseg / SSSeg deep stem index -> timm name (0/3/6 convs, 1/4/7 BNs, 2/5/8 ReLUs)
_STEM = {"0": "conv1.0", "1": "conv1.1", "3": "conv1.3", "4": "conv1.4", "6": "conv1.6", "7": "bn1"}


def _stem_rules(prefix: str) -> list[tuple[str, str]]:
    return [
        (rf"{prefix}\.stem\.{i}\.{_BN if i in '147' else '(weight)'}", f"backbone.{t}.\\1")
        for i, t in _STEM.items()
    ]


def _cna(src: str, dst: str, conv: str = "conv", norm: str = "bn") -> list[tuple[str, str]]:
    """Rules for a conv + norm pair ``src.{conv,norm}`` -> ``dst.{conv,norm}``."""
    return [(rf"{src}\.{conv}\.(weight)", f"{dst}.conv.\\1"), (rf"{src}\.{norm}\.{_BN}", f"{dst}.norm.\\1")]


_CCA = r"(query_conv|key_conv|value_conv)\.(weight|bias)"

_RULES: dict[str, list[tuple[str, str]]] = {
    "mmseg": [
        *_stem_rules("backbone"),
        (rf"backbone\.{_LAYER}", r"backbone.\1"),
        *_cna(r"decode_head\.convs\.0", "head.conv_in"),
        *_cna(r"decode_head\.convs\.1", "head.conv_out"),
        *_cna(r"decode_head\.conv_cat", "head.bottleneck"),
        (rf"decode_head\.cca\.{_CCA}", r"head.context.cca.\1.\2"),
        (r"decode_head\.cca\.gamma\.scale", "head.context.cca.gamma"),
        (r"decode_head\.nl_block\.(theta|phi|g)\.conv\.(weight|bias)", r"head.context.\1.\2"),
        (r"decode_head\.nl_block\.conv_out\.conv\.(weight)", r"head.context.conv_out.\1"),
        (rf"decode_head\.nl_block\.conv_out\.bn\.{_BN}", r"head.context.norm.\1"),
        (r"decode_head\.conv_seg\.(weight|bias)", r"head.classifier.\1"),
        *_cna(r"auxiliary_head\.convs\.0", "aux_head.conv_in"),
        (r"auxiliary_head\.conv_seg\.(weight|bias)", r"aux_head.classifier.\1"),
    ],
    "ssseg": [
        *_stem_rules("backbone_net"),
        (rf"backbone_net\.{_LAYER}", r"backbone.\1"),
        *_cna(r"conv_before_cca", "head.conv_in", "0", "1"),
        (rf"cca\.{_CCA}", r"head.context.cca.\1.\2"),
        (r"cca\.gamma\.scale", "head.context.cca.gamma"),
        *_cna(r"conv_after_cca", "head.conv_out", "0", "1"),
        *_cna(r"decoder", "head.bottleneck", "0", "1"),
        (r"decoder\.4\.(weight|bias)", r"head.classifier.\1"),
        *_cna(r"auxiliary_decoder", "aux_head.conv_in", "0", "1"),
        (r"auxiliary_decoder\.4\.(weight|bias)", r"aux_head.classifier.\1"),
    ],
    "authors": [
        (r"conv1\.(weight)", r"backbone.conv1.0.\1"),
        (rf"bn1\.{_BN}", r"backbone.conv1.1.\1"),
        (r"conv2\.(weight)", r"backbone.conv1.3.\1"),
        (rf"bn2\.{_BN}", r"backbone.conv1.4.\1"),
        (r"conv3\.(weight)", r"backbone.conv1.6.\1"),
        (rf"bn3\.{_BN}", r"backbone.bn1.\1"),
        (_LAYER, r"backbone.\1"),
        *_cna(r"head\.conva", "head.conv_in", "0", "1"),
        (rf"head\.cca\.{_CCA}", r"head.context.cca.\1.\2"),
        (r"head\.cca\.gamma", "head.context.cca.gamma"),
        *_cna(r"head\.convb", "head.conv_out", "0", "1"),
        *_cna(r"head\.bottleneck", "head.bottleneck", "0", "1"),
        (r"head\.bottleneck\.3\.(weight|bias)", r"head.classifier.\1"),
        *_cna(r"dsn", "aux_head.conv_in", "0", "1"),
        (r"dsn\.0\.bias", "aux_head.conv_in.conv.bias"),  # folded into the BN below
        (r"dsn\.3\.(weight|bias)", r"aux_head.classifier.\1"),
    ],
    "ccnet": [(r"((?:backbone|head|aux_head)\..+)", r"\1")],
}
_DROPPED = {"authors": ("criterion.",)}  # loss modules saved along with the authors' model
SOURCES = tuple(_RULES)


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit: the message lists unknown, missing and mis-shaped keys."""


# A mismatch of whole architectures involves hundreds of keys: a few examples and the count say enough.
_LISTED = 5


def _listing(keys: list[str], limit: int = _LISTED) -> str:
    """``a, b, c, ... (N in all)``: the first ``limit`` keys, one per module first (a BatchNorm's five
    tensors would otherwise fill the examples with one module)."""
    modules: dict[str, str] = {}
    for key in keys:
        modules.setdefault(key.split(":")[0].rsplit(".", 1)[0], key)
    examples = list(modules.values())[:limit]
    examples += [key for key in keys if key not in examples][: limit - len(examples)]
    shown = ", ".join(examples)
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > limit else shown


def unwrap_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """The tensors of a saved checkpoint: looks inside ``state_dict`` / ``model`` entries (mmseg, SSSeg,
    training checkpoints) and strips a DataParallel ``module.`` prefix."""
    state = checkpoint
    for key in ("state_dict", "model"):
        inner = state.get(key) if isinstance(state, Mapping) else None
        if isinstance(inner, Mapping) and any(isinstance(v, Tensor) for v in inner.values()):
            state = inner
            break
    if not isinstance(state, Mapping) or not state:
        raise CheckpointMismatchError("checkpoint holds no state dict (expected a dict of tensors)")
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    if not tensors:
        raise CheckpointMismatchError("checkpoint holds no tensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def detect_source(state_dict: Mapping[str, Tensor]) -> str:
    """Guess the layout of a state dict from its key names: one of ``SOURCES``."""
    keys = list(state_dict)
    if any(k.startswith(("decode_head.", "backbone.stem.")) for k in keys):
        return "mmseg"
    if any(k.startswith("backbone_net.") for k in keys):
        return "ssseg"
    if any(k.startswith(("head.conva.", "dsn.")) for k in keys):
        return "authors"
    if any(k.startswith(("head.conv_in.", "backbone.conv1.")) for k in keys):
        return "ccnet"
    raise CheckpointMismatchError(
        f"cannot tell the checkpoint layout from its keys ({_listing(sorted(keys), 8)}); pass source= one of "
        f"{list(SOURCES)}"
    )


def _rename(state: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
    """Apply the renaming rules of ``source``; unknown keys are an error listing them."""
    if source not in _RULES:
        raise ValueError(f"source: unknown {source!r}; allowed: {[*SOURCES, 'auto']}")
    rules = [(re.compile(pattern), replacement) for pattern, replacement in _RULES[source]]
    dropped = _DROPPED.get(source, ())
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        if key.startswith(dropped):
            continue
        for pattern, replacement in rules:
            match = pattern.fullmatch(key)
            if match:
                out[match.expand(replacement)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointMismatchError(
            f"{len(unknown)} keys are not in the {source} layout: {_listing(unknown)}"
        )
    return out


def convert_checkpoint(checkpoint: Mapping[str, Any], source: str = "auto") -> dict[str, Tensor]:
    """Rename (and where needed transform) a published checkpoint into our CCNet layout.

    Args:
        checkpoint: a state dict, or a saved checkpoint holding one (``state_dict`` / ``model`` entry).
        source: ``"mmseg"``, ``"ssseg"``, ``"authors"``, ``"ccnet"`` (ours, unchanged) or ``"auto"``.

    Returns:
        A new state dict with our key names (tensors shared with the input where unchanged).

    Raises:
        CheckpointMismatchError: keys that the source layout does not know, listed.
    """
    state = unwrap_state_dict(checkpoint)
    if source == "auto":
        source = detect_source(state)
    out = _rename(state, source)
    gamma = "head.context.cca.gamma"
    if gamma in out:
        if out[gamma].numel() != 1:
            raise CheckpointMismatchError(f"{gamma}: expected one value, got shape {tuple(out[gamma].shape)}")
        out[gamma] = out[gamma].reshape(())
    if source == "authors":
        _from_inplace_abn(out)
    return out


def _from_inplace_abn(state: dict[str, Tensor]) -> None:
    """InPlace-ABN BNs -> nn.BatchNorm2d (see the module docstring), in place."""
    for key in [k for k in state if k.endswith(".running_mean")]:
        prefix = key[: -len("running_mean")]
        if prefix + "weight" in state:
            state[prefix + "weight"] = state[prefix + "weight"].abs() + _INPLACE_ABN_EPS
        state.setdefault(prefix + "num_batches_tracked", torch.tensor(0, dtype=torch.long))
    bias = state.pop("aux_head.conv_in.conv.bias", None)
    if bias is not None:
        mean = "aux_head.conv_in.norm.running_mean"
        if mean not in state or state[mean].shape != bias.shape:
            raise CheckpointMismatchError(f"dsn.0.bias {tuple(bias.shape)} does not fit the BN after it")
        state[mean] = state[mean] - bias


def load_checkpoint_strict(
    model: nn.Module,
    state_dict: Mapping[str, Tensor],
    *,
    what: str = "checkpoint",
    optional: Collection[str] = (),
) -> list[str]:
    """Load ``state_dict`` into ``model`` after checking that every key and every shape match. The model's
    ``optional`` keys may be absent (they keep their initialisation); returns those that were.

    Raises:
        CheckpointMismatchError: counting missing keys, unexpected keys and shape mismatches, with a few
            examples of each (e.g. a classifier trained for another number of classes, or weights of
            another architecture).
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict) - set(optional))
    unexpected = sorted(set(state_dict) - set(expected))
    noun = "checkpoint" if what == "checkpoint" else "file"  # ``what`` (a path) is named once, in front
    mis_shaped = [
        f"{k}: {noun} {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if mis_shaped:
        problems.append(f"shape mismatches: {_listing(mis_shaped)}")
    if problems:
        raise CheckpointMismatchError(f"{what} does not fit the model; " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=not optional)
    return sorted(set(expected) - set(state_dict))


def convert_backbone_checkpoint(checkpoint: Mapping[str, Any], source: str = "auto") -> dict[str, Tensor]:
    """ImageNet backbone weights -> timm ResNet key names (``conv1.0.weight``, ``layer1.0.bn1.bias``, ...).

    Args:
        checkpoint: a backbone state dict (or a checkpoint holding one) in mmseg layout (``stem.*``, as in
            open-mmlab's ``resnet50_v1c`` files), the authors' deep-stem names (``conv1``/``bn1``/``conv2``/
            ``bn2``/``conv3``/``bn3``, plain BatchNorm as in the MIT CSAIL ImageNet files) or timm names
            (``conv1.0``, ...). The ImageNet classifier ``fc.*`` is dropped; missing ``num_batches_tracked``
            buffers are set to 0.
        source: ``"mmseg"``, ``"authors"``, ``"ccnet"`` (timm names) or ``"auto"``.
    """
    state = {k: v for k, v in unwrap_state_dict(checkpoint).items() if not k.startswith("fc.")}
    if source == "auto":
        if any(k.startswith("stem.") for k in state):
            source = "mmseg"
        elif "conv2.weight" in state:
            source = "authors"
        else:
            source = "ccnet"
    out = _rename(state if source == "authors" else {f"backbone.{k}": v for k, v in state.items()}, source)
    foreign = [k for k in out if not k.startswith("backbone.")]
    if foreign:
        raise CheckpointMismatchError(f"not backbone weights: {_listing(foreign)}")
    for key in [k for k in out if k.endswith(".running_mean")]:
        out.setdefault(
            key.removesuffix("running_mean") + "num_batches_tracked", torch.tensor(0, dtype=torch.long)
        )
    return {k.removeprefix("backbone."): v for k, v in out.items()}


def inflate_2d_state_dict(state: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Weights of a 2-D CCNet (our layout, e.g. after ``convert_checkpoint``) -> weights for ``model``, its
    video twin.

    The 1x1 convs of the context module are reshaped (C', C, 1, 1) -> (C', C, 1, 1, 1) where ``model``
    holds them in 3-D; every other tensor is passed on unchanged (also weights that already fit, so the
    video model's own weights go through as they are). Nothing else is checked here: a strict load such as
    :func:`load_checkpoint_strict` reports whatever still does not fit.
    """
    expected = model.state_dict()
    out = dict(state)
    for key, value in state.items():
        target = expected.get(key)
        if (
            key.startswith("head.context.")
            and target is not None
            and value.dim() == 4
            and target.shape == (*value.shape, 1)
        ):
            out[key] = value.unsqueeze(-1)
    return out
