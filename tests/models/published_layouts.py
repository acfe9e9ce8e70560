"""Test oracle: random checkpoints in the published key layouts and an independent functional forward.

Everything here is written from the documented facts (key names and shapes of mmsegmentation,
SSSegmentation and the CCNet authors' checkpoints; the dilated-ResNet and head architectures), with plain
``F.conv2d`` / ``F.batch_norm`` and a dense masked criss-cross attention. It never imports ccnet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
IN_ABN_EPS = 1e-5


def block_plan(depth: int, strides, dilations, contract: bool) -> list[list[tuple[int, int]]]:
    """Per stage, per bottleneck block: (stride of the 3x3 conv, dilation of the 3x3 conv)."""
    plan = []
    for n, s, d in zip(BLOCKS[depth], strides, dilations, strict=True):
        first = d // 2 if contract and d > 1 else d
        plan.append([(s, first)] + [(1, d)] * (n - 1))
    return plan


# mmseg ResNetV1c (also SSSeg): D8 strides (1,2,1,1) dilations (1,1,2,4); D16 (1,2,2,1) (1,1,1,2);
# contract_dilation. The authors: D8 without contraction.
def v1c_plan(depth: int, output_stride: int) -> list[list[tuple[int, int]]]:
    if output_stride == 8:
        return block_plan(depth, (1, 2, 1, 1), (1, 1, 2, 4), contract=True)
    return block_plan(depth, (1, 2, 2, 1), (1, 1, 1, 2), contract=True)


def authors_plan() -> list[list[tuple[int, int]]]:
    return block_plan(101, (1, 2, 1, 1), (1, 1, 2, 4), contract=False)


@dataclass(frozen=True)
class Layout:
    """Key names of one published checkpoint family: (conv weight key, BN prefix) pairs and prefixes."""

    stem: tuple[tuple[str, str], ...]
    body: str
    conv_in: tuple[str, str]
    cca: str
    gamma: str
    gamma_shape: tuple[int, ...]
    conv_out: tuple[str, str]
    bottleneck: tuple[str, str]
    classifier: str
    aux_conv: tuple[str, str]
    aux_classifier: str
    aux_conv_bias: bool = False
    num_batches_tracked: bool = True
    inplace_abn: bool = False  # InPlace-ABN scales by |weight| + eps


MMSEG = Layout(
    stem=(
        ("backbone.stem.0.weight", "backbone.stem.1."),
        ("backbone.stem.3.weight", "backbone.stem.4."),
        ("backbone.stem.6.weight", "backbone.stem.7."),
    ),
    body="backbone.",
    conv_in=("decode_head.convs.0.conv.weight", "decode_head.convs.0.bn."),
    cca="decode_head.cca.",
    gamma="decode_head.cca.gamma.scale",
    gamma_shape=(),
    conv_out=("decode_head.convs.1.conv.weight", "decode_head.convs.1.bn."),
    bottleneck=("decode_head.conv_cat.conv.weight", "decode_head.conv_cat.bn."),
    classifier="decode_head.conv_seg.",
    aux_conv=("auxiliary_head.convs.0.conv.weight", "auxiliary_head.convs.0.bn."),
    aux_classifier="auxiliary_head.conv_seg.",
)

SSSEG = Layout(
    stem=(
        ("backbone_net.stem.0.weight", "backbone_net.stem.1."),
        ("backbone_net.stem.3.weight", "backbone_net.stem.4."),
        ("backbone_net.stem.6.weight", "backbone_net.stem.7."),
    ),
    body="backbone_net.",
    conv_in=("conv_before_cca.0.weight", "conv_before_cca.1."),
    cca="cca.",
    gamma="cca.gamma.scale",
    gamma_shape=(),
    conv_out=("conv_after_cca.0.weight", "conv_after_cca.1."),
    bottleneck=("decoder.0.weight", "decoder.1."),
    classifier="decoder.4.",
    aux_conv=("auxiliary_decoder.0.weight", "auxiliary_decoder.1."),
    aux_classifier="auxiliary_decoder.4.",
)

AUTHORS = Layout(
    stem=(("conv1.weight", "bn1."), ("conv2.weight", "bn2."), ("conv3.weight", "bn3.")),
    body="",
    conv_in=("head.conva.0.weight", "head.conva.1."),
    cca="head.cca.",
    gamma="head.cca.gamma",
    gamma_shape=(1,),
    conv_out=("head.convb.0.weight", "head.convb.1."),
    bottleneck=("head.bottleneck.0.weight", "head.bottleneck.1."),
    classifier="head.bottleneck.3.",
    aux_conv=("dsn.0.weight", "dsn.1."),
    aux_classifier="dsn.3.",
    aux_conv_bias=True,
    num_batches_tracked=False,
    inplace_abn=True,
)


def random_checkpoint(
    layout: Layout,
    *,
    depth: int,
    stem_widths: tuple[int, int, int],
    num_classes: int,
    aux_channels: int,
    channels: int = 512,
    gamma: float = 0.7,
    seed: int = 0,
) -> dict[str, Tensor]:
    """A state dict with every key and shape of ``layout``, filled with non-trivial random values."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, Tensor] = {}

    def conv(key: str, cout: int, cin: int, k: int, bias: bool = False) -> None:
        sd[key] = torch.randn(cout, cin, k, k, generator=g) / math.sqrt(cin * k * k)
        if bias:
            sd[key[: -len("weight")] + "bias"] = 0.1 * torch.randn(cout, generator=g)

    def bn(prefix: str, c: int) -> None:
        weight = 0.4 + 0.5 * torch.rand(c, generator=g)
        if layout.inplace_abn:  # stored weights may be negative; InPlace-ABN uses |w| + eps
            weight = weight * torch.where(torch.rand(c, generator=g) < 0.5, -1.0, 1.0)
        sd[prefix + "weight"] = weight
        sd[prefix + "bias"] = 0.1 * torch.randn(c, generator=g)
        sd[prefix + "running_mean"] = 0.1 * torch.randn(c, generator=g)
        sd[prefix + "running_var"] = 0.5 + torch.rand(c, generator=g)
        if layout.num_batches_tracked:
            sd[prefix + "num_batches_tracked"] = torch.tensor(1000, dtype=torch.long)

    cin = 3
    for (conv_key, bn_prefix), width in zip(layout.stem, stem_widths, strict=True):
        conv(conv_key, width, cin, 3)
        bn(bn_prefix, width)
        cin = width
    inplanes = stem_widths[-1]
    for stage, n in enumerate(BLOCKS[depth]):
        planes = 64 * 2**stage
        for b in range(n):
            p = f"{layout.body}layer{stage + 1}.{b}."
            conv(p + "conv1.weight", planes, inplanes, 1)
            bn(p + "bn1.", planes)
            conv(p + "conv2.weight", planes, planes, 3)
            bn(p + "bn2.", planes)
            conv(p + "conv3.weight", 4 * planes, planes, 1)
            bn(p + "bn3.", 4 * planes)
            if b == 0:
                conv(p + "downsample.0.weight", 4 * planes, inplanes, 1)
                bn(p + "downsample.1.", 4 * planes)
            inplanes = 4 * planes
    conv(layout.conv_in[0], channels, 2048, 3)
    bn(layout.conv_in[1], channels)
    conv(layout.cca + "query_conv.weight", channels // 8, channels, 1, bias=True)
    conv(layout.cca + "key_conv.weight", channels // 8, channels, 1, bias=True)
    conv(layout.cca + "value_conv.weight", channels, channels, 1, bias=True)
    sd[layout.gamma] = torch.full(layout.gamma_shape, gamma)
    conv(layout.conv_out[0], channels, channels, 3)
    bn(layout.conv_out[1], channels)
    conv(layout.bottleneck[0], channels, 2048 + channels, 3)
    bn(layout.bottleneck[1], channels)
    conv(layout.classifier + "weight", num_classes, channels, 1, bias=True)
    conv(layout.aux_conv[0], aux_channels, 1024, 3, bias=layout.aux_conv_bias)
    bn(layout.aux_conv[1], aux_channels)
    conv(layout.aux_classifier + "weight", num_classes, aux_channels, 1, bias=True)
    return sd


def dense_criss_cross_block(x: Tensor, wq, bq, wk, bk, wv, bv, gamma) -> Tensor:
    """y = gamma * sum_i softmax_i(<q_u, k_i>) v_i + x over the H + W - 1 pixels i sharing u's row or
    column (u once), as an (HW x HW) masked softmax."""
    B, C, H, W = x.shape
    q = F.conv2d(x, wq, bq).flatten(2)  # (B, C', HW)
    k = F.conv2d(x, wk, bk).flatten(2)
    v = F.conv2d(x, wv, bv).flatten(2)  # (B, C, HW)
    rows = torch.arange(H).repeat_interleave(W)
    cols = torch.arange(W).repeat(H)
    mask = (rows[:, None] == rows[None, :]) | (cols[:, None] == cols[None, :])  # (HW, HW)
    energy = torch.einsum("bcu,bci->bui", q, k).masked_fill(~mask, float("-inf"))
    out = torch.einsum("bui,bci->bcu", energy.softmax(-1), v).reshape(B, C, H, W)
    return gamma.reshape(()) * out + x


def reference_forward(
    sd: dict[str, Tensor],
    layout: Layout,
    x: Tensor,
    *,
    plan: list[list[tuple[int, int]]],
    ceil_mode: bool = False,
    recurrence: int = 2,
    leaky: bool = False,
    align_corners: bool = False,
) -> tuple[Tensor, Tensor]:
    """Eval-mode logits of the published network: (out (B, K, H, W) at input size, aux (B, K, h, w))."""
    sd = {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}
    x = x.double()
    size = x.shape[-2:]

    def bn(t: Tensor, prefix: str) -> Tensor:
        weight = sd[prefix + "weight"]
        if layout.inplace_abn:
            weight = weight.abs() + IN_ABN_EPS
        return F.batch_norm(
            t,
            sd[prefix + "running_mean"],
            sd[prefix + "running_var"],
            weight,
            sd[prefix + "bias"],
            False,
            0.0,
            1e-5,
        )

    def act(t: Tensor) -> Tensor:
        return F.leaky_relu(t, 0.01) if leaky else F.relu(t)

    for i, (conv_key, bn_prefix) in enumerate(layout.stem):
        x = F.relu(bn(F.conv2d(x, sd[conv_key], stride=2 if i == 0 else 1, padding=1), bn_prefix))
    x = F.max_pool2d(x, 3, 2, 1, ceil_mode=ceil_mode)
    stage3 = None
    for stage, blocks in enumerate(plan):
        for b, (stride, dilation) in enumerate(blocks):
            p = f"{layout.body}layer{stage + 1}.{b}."
            out = F.relu(bn(F.conv2d(x, sd[p + "conv1.weight"]), p + "bn1."))
            conv2 = F.conv2d(out, sd[p + "conv2.weight"], stride=stride, padding=dilation, dilation=dilation)
            out = F.relu(bn(conv2, p + "bn2."))
            out = bn(F.conv2d(out, sd[p + "conv3.weight"]), p + "bn3.")
            if b == 0:
                x = bn(F.conv2d(x, sd[p + "downsample.0.weight"], stride=stride), p + "downsample.1.")
            x = F.relu(out + x)
        if stage == 2:
            stage3 = x
    stage4 = x

    y = act(bn(F.conv2d(stage4, sd[layout.conv_in[0]], padding=1), layout.conv_in[1]))
    c = layout.cca
    for _ in range(recurrence):
        y = dense_criss_cross_block(
            y,
            sd[c + "query_conv.weight"],
            sd[c + "query_conv.bias"],
            sd[c + "key_conv.weight"],
            sd[c + "key_conv.bias"],
            sd[c + "value_conv.weight"],
            sd[c + "value_conv.bias"],
            sd[layout.gamma],
        )
    y = act(bn(F.conv2d(y, sd[layout.conv_out[0]], padding=1), layout.conv_out[1]))
    y = act(
        bn(F.conv2d(torch.cat([stage4, y], 1), sd[layout.bottleneck[0]], padding=1), layout.bottleneck[1])
    )
    logits = F.conv2d(y, sd[layout.classifier + "weight"], sd[layout.classifier + "bias"])
    out = F.interpolate(logits, size=size, mode="bilinear", align_corners=align_corners)

    aux_bias = sd.get(layout.aux_conv[0][: -len("weight")] + "bias")
    a = act(bn(F.conv2d(stage3, sd[layout.aux_conv[0]], aux_bias, padding=1), layout.aux_conv[1]))
    aux = F.conv2d(a, sd[layout.aux_classifier + "weight"], sd[layout.aux_classifier + "bias"])
    return out, aux
