"""Fast CPU (and GPU) inference: BatchNorm folding, channels-last memory, bf16 autocast, ``torch.compile``.

:func:`optimize_for_inference` returns an eval-mode copy of a segmentation model that computes the same
function (up to float rounding; bf16 changes it by design) and never touches the caller's model:

- ``fold_bn``: every BatchNorm2d that directly follows a Conv2d in the known module structure (consecutive
  children of ``nn.Sequential`` such as :class:`~ccnet.models.heads.ConvNormAct` and ResNet downsample
  branches, the ``convN``/``bnN`` pairs of timm ResNet blocks and stems, the non-local block's output conv)
  is folded into that conv's weight and bias and replaced by ``nn.Identity``. Plain module surgery, no
  torch.fx; eval-mode BatchNorm is the affine map ``(x - mean) / sqrt(var + eps) * weight + bias``.
- ``channels_last``: weights and inputs in channels-last memory (oneDNN's preferred layout on CPU, Tensor
  Cores' on GPU).
- ``bf16``: the forward pass under ``torch.autocast`` in bfloat16 on the input's device type; logits are
  returned in float32. Fast on CPUs with AVX-512 BF16 / AMX (see :func:`cpu_supports_bf16`).
- ``compile``: ``torch.compile`` of the network (inductor); the first call of each new input size compiles.

The result is a :class:`FastSegmenter` (an ``nn.Module``) with the same output type as the model
(:class:`~ccnet.models.SegmentationOutput`) and the model's ``preprocess`` / ``align_corners`` /
``num_classes`` / ``pretrained_cfg`` / ``flip_pairs`` (when it has them), so
:class:`ccnet.engine.inference.Segmenter` uses it unchanged.
"""

from __future__ import annotations

import copy
import itertools
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from ccnet.engine.dist import module_device

__all__ = [
    "FastSegmenter",
    "cpu_supports_bf16",
    "fold_batchnorm",
    "optimize_for_inference",
    "set_cpu_threads",
]

_BATCHNORMS = (nn.BatchNorm2d, nn.SyncBatchNorm)
_FORWARDED_ATTRIBUTES = (
    "preprocess",
    "align_corners",
    "num_classes",
    "pretrained_cfg",
    "arch",
    "classes",
    "flip_pairs",  # left/right classes swapped by flip testing
    "clip_length",  # video models
    "frames",
)
# conv/norm attribute pairs applied back to back in the forward of these classes (by class name, so that
# timm is not imported here): timm ResNet blocks (conv2 -> drop_block (identity in eval) -> bn2), timm's
# features-only ResNet (stem conv1 -> bn1), ccnet's non-local block (conv_out -> norm).
_NAMED_PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "Bottleneck": (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
    "BasicBlock": (("conv1", "bn1"), ("conv2", "bn2")),
    "FeatureListNet": (("conv1", "bn1"),),
    "ResNet": (("conv1", "bn1"),),
    "NonLocal2d": (("conv_out", "norm"),),
}


def cpu_supports_bf16() -> bool:
    """True when oneDNN has fast bf16 kernels on this CPU (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def set_cpu_threads(num_threads: int | None) -> int:
    """Use ``num_threads`` intra-op threads (None: leave as is); returns the count in effect.

    On a machine shared with other work, one thread per physical core and no oversubscription is fastest.
    """
    if num_threads is not None:
        if num_threads < 1:
            raise ValueError(f"num_threads: expected >= 1, got {num_threads}")
        torch.set_num_threads(num_threads)
    return torch.get_num_threads()


def _last_conv(module: nn.Module) -> nn.Conv2d | None:
    """``module`` if it is a Conv2d, the last child of a Sequential ending in a Conv2d, else None."""
    if isinstance(module, nn.Conv2d):
        return module
    if isinstance(module, nn.Sequential) and len(module) and isinstance(module[-1], nn.Conv2d):
        return module[-1]
    return None


def _conv_bn_pairs(parent: nn.Module) -> Iterator[tuple[nn.Conv2d, str]]:
    """(conv, name of the BatchNorm child of ``parent`` applied right after it) for ``parent``'s children."""
    if isinstance(parent, nn.Sequential):
        names = list(parent._modules)
        for first, second in itertools.pairwise(names):
            conv = _last_conv(parent._modules[first])
            if conv is not None and isinstance(parent._modules[second], _BATCHNORMS):
                yield conv, second
        return
    for conv_name, bn_name in _NAMED_PAIRS.get(type(parent).__name__, ()):
        conv = _last_conv(getattr(parent, conv_name, None))
        if conv is not None and isinstance(getattr(parent, bn_name, None), _BATCHNORMS):
            yield conv, bn_name


@torch.no_grad()
def _fold_into(conv: nn.Conv2d, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """conv <- bn(conv(.)) for an eval-mode BatchNorm: per output channel scale and shift."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold_batchnorm: a BatchNorm without running statistics cannot be folded")
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)  # (C_out,)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    weight = conv.weight.double() * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
    bias = shift if conv.bias is None else conv.bias.double() * scale + shift
    conv.weight.copy_(weight.to(conv.weight.dtype))
    conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)


def fold_batchnorm(model: nn.Module) -> int:
    """Fold, **in place**, every BatchNorm that directly follows a conv (see the module docstring) into it.

    The model must be in eval mode (BatchNorm then uses its running statistics). Folded norms become
    ``nn.Identity``. Returns the number of folded norms.
    """
    if model.training:
        raise ValueError("fold_batchnorm: the model must be in eval mode (call .eval() first)")
    folded = 0
    for parent in list(model.modules()):
        for conv, bn_name in list(_conv_bn_pairs(parent)):
            _fold_into(conv, getattr(parent, bn_name))
            setattr(parent, bn_name, nn.Identity())
            folded += 1
    return folded


class FastSegmenter(nn.Module):
    """An inference wrapper: input layout, autocast and output dtype around ``network``.

    (B, 3, H, W) float images -> the network's output with float32 logits (``SegmentationOutput`` for ccnet
    models, a tensor for networks returning one).

    Args:
        network: the (possibly folded, compiled) eval-mode network.
        channels_last: convert inputs to channels-last memory.
        bf16: run under bfloat16 autocast.
        source: the model whose attributes (``preprocess``, ``align_corners``, ...) to expose.
    """

    def __init__(
        self, network: nn.Module, *, channels_last: bool, bf16: bool, source: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.network = network
        self.channels_last = channels_last
        self.bf16 = bf16
        for name in _FORWARDED_ATTRIBUTES:
            if source is not None and hasattr(source, name):
                setattr(self, name, getattr(source, name))

    def forward(self, x: Tensor) -> Any:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if not self.bf16:
            return self.network(x)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16):
            output = self.network(x)
        return _to_float(output)

    def train(self, mode: bool = True) -> FastSegmenter:
        if mode:
            raise RuntimeError("FastSegmenter is for inference only (BatchNorm may be folded)")
        return super().train(False)

    def extra_repr(self) -> str:
        return f"channels_last={self.channels_last}, bf16={self.bf16}"


def _to_float(output: Any) -> Any:
    """Float32 logits: tensors converted, NamedTuples / tuples converted field by field."""
    if isinstance(output, Tensor):
        return output.float()
    if isinstance(output, tuple):
        values = [_to_float(v) if v is not None else None for v in output]
        return type(output)(*values) if hasattr(output, "_fields") else type(output)(values)
    return output


def optimize_for_inference(
    model: nn.Module,
    *,
    fold_bn: bool = True,
    channels_last: bool = True,
    bf16: bool = False,
    compile: bool = False,
    compile_options: dict[str, Any] | None = None,
) -> FastSegmenter:
    """An optimised eval-mode copy of ``model`` (see the module docstring); ``model`` is not modified.

    Args:
        model: maps (B, 3, H, W) to logits (a ccnet model or any conv network).
        fold_bn: fold BatchNorm into the preceding convs.
        channels_last: channels-last weights and inputs.
        bf16: bfloat16 autocast (logits returned as float32); on the CPU only useful where
            :func:`cpu_supports_bf16` is True (a RuntimeWarning says so otherwise).
        compile: ``torch.compile`` the network (options: ``compile_options``, e.g. ``{"dynamic": True}``).

    Returns:
        a :class:`FastSegmenter` in eval mode, gradients disabled on its parameters.
    """
    if bf16 and module_device(model).type == "cpu" and not cpu_supports_bf16():
        warnings.warn(
            "optimize_for_inference(bf16=True): this CPU has no native bf16 kernels (AVX-512 BF16 or AMX), "
            "so bf16 is emulated and slower than float32 here",
            RuntimeWarning,
            stacklevel=2,
        )
    network = copy.deepcopy(model).eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    if fold_bn:
        fold_batchnorm(network)
    if channels_last:
        _channels_last_weights(network)
    if compile:
        network = torch.compile(network, **(compile_options or {}))
    return FastSegmenter(network, channels_last=channels_last, bf16=bf16, source=model).eval()


def _channels_last_weights(network: nn.Module) -> None:
    """4-D parameters and buffers (2-D conv weights) in channels-last memory, in place; ``Module.to`` would
    refuse the 5-D weights of the 3-D criss-cross attention of video models."""
    with torch.no_grad():
        for tensor in itertools.chain(network.parameters(), network.buffers()):
            if tensor.dim() == 4:
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
