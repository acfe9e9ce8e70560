"""Registry, forward contract and the architecture overrides of the CCNet family."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ccnet.models import CCNet, NonLocal2d, SegmentationOutput, create_model, list_models
from ccnet.ops import RecurrentCrissCrossAttention
from tests.models.helpers import randomise

REQUIRED = [
    "ccnet_r50_d8",
    "ccnet_r101_d8",
    "ccnet_r50_d16",
    "ccnet_r101_d16",
    "fcn_r50_d8",
    "nonlocal_r50_d8",
]


def test_registry_names_and_unknown_name():
    assert set(REQUIRED) <= set(list_models())
    fcn = list_models("fcn_*")
    assert {"fcn_r101_d8", "fcn_r50_d8"} <= set(fcn) and all(name.startswith("fcn_") for name in fcn)
    with pytest.raises(ValueError, match=r"unknown model 'ccnet_r50_d9'.*ccnet_r50_d8"):
        create_model("ccnet_r50_d9", num_classes=19)
    with pytest.raises(ValueError, match="num_classes"):
        create_model("ccnet_r50_d8")


@pytest.mark.parametrize("name", ["ccnet_r50_d8", "ccnet_r50_d16", "fcn_r50_d8", "nonlocal_r50_d8"])
def test_forward_contract(name):
    model = create_model(name, num_classes=5).eval()
    x = torch.randn(2, 3, 50, 70)
    with torch.no_grad():
        output = model(x)
        decoded = model.decode(x)
    assert isinstance(output, SegmentationOutput)
    assert output.out.shape == (2, 5, 50, 70) and output.aux is None
    stride = 8 if name.endswith("d8") else 16
    assert decoded.out.shape == (2, 5, math.ceil(50 / stride), math.ceil(70 / stride))
    assert model.output_stride == stride


def test_train_mode_returns_aux_logits():
    model = create_model("ccnet_r50_d8", num_classes=4).train()
    output = model(torch.randn(2, 3, 48, 40))
    assert output.out.shape == output.aux.shape == (2, 4, 48, 40)
    output.out.sum().backward()  # trainable end to end
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(3, 48, 40))


def test_resnet101_variants_structure():
    with torch.device("meta"):
        for name, stride in [("ccnet_r101_d8", 8), ("ccnet_r101_d16", 16)]:
            model = create_model(name, num_classes=19)
            assert len(model.backbone.layer3) == 23 and len(model.backbone.layer4) == 3
            assert isinstance(model.head.context, RecurrentCrissCrossAttention)
            assert model.output_stride == stride
        authors = create_model("ccnet_r101_d8_authors", num_classes=19)
    assert authors.preprocess.bgr and authors.align_corners
    assert authors.aux_head.conv_in.conv.out_channels == 512


def test_context_modules():
    with torch.device("meta"):
        ccnet = create_model("ccnet_r50_d8", num_classes=19, recurrence=3)
        fcn = create_model("fcn_r50_d8", num_classes=19)
        nonlocal_ = create_model("nonlocal_r50_d8", num_classes=19)
    assert isinstance(ccnet.head.context, RecurrentCrissCrossAttention) and ccnet.head.context.recurrence == 3
    assert isinstance(fcn.head.context, nn.Identity)
    assert isinstance(nonlocal_.head.context, NonLocal2d)
    assert ccnet.aux_head.conv_in.conv.out_channels == 256  # mmseg default


def test_recurrence_zero_is_the_fcn_twin():
    x = torch.randn(1, 3, 64, 64)
    ccnet = randomise(create_model("ccnet_r50_d8", num_classes=3, recurrence=0)).eval()
    fcn = create_model("fcn_r50_d8", num_classes=3).eval()
    fcn.load_state_dict({k: v for k, v in ccnet.state_dict().items() if not k.startswith("head.context.")})
    with torch.no_grad():
        assert torch.allclose(ccnet(x).out, fcn(x).out, atol=1e-5)
        ccnet.head.context.recurrence = 2  # gamma = 0.8: attention now changes the output
        assert not torch.allclose(ccnet(x).out, fcn(x).out, atol=1e-3)


def test_activation_override():
    with torch.device("meta"):
        model = create_model("ccnet_r50_d8", num_classes=19, activation="leaky_relu", aux_channels=512)
    for part in (model.head, model.aux_head):
        acts = [m for m in part.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))]
        assert acts and all(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.01 for m in acts)
    assert not any(isinstance(m, nn.LeakyReLU) for m in model.backbone.modules())
    assert model.aux_head.conv_in.conv.out_channels == 512
    with pytest.raises(ValueError, match="activation"):
        create_model("ccnet_r50_d8", num_classes=19, activation="gelu", backbone="test_resnet")


def test_align_corners_of_final_upsampling():
    x = torch.randn(1, 3, 45, 61)
    model = randomise(create_model("ccnet_r50_d8", num_classes=3, align_corners=True)).eval()
    assert isinstance(model, CCNet)
    with torch.no_grad():
        low = model.decode(x).out
        out = model(x).out
    assert torch.allclose(
        out, F.interpolate(low, size=(45, 61), mode="bilinear", align_corners=True), atol=1e-6
    )
    assert not torch.allclose(out, F.interpolate(low, size=(45, 61), mode="bilinear", align_corners=False))


def test_nonlocal_block_against_explicit_sums():
    torch.manual_seed(0)
    block = NonLocal2d(8, reduction=2)
    with torch.no_grad():
        block.norm.weight.uniform_(0.5, 1.5)  # a fresh block is the identity (norm weight 0)
        block.norm.running_mean.normal_()
    block.eval()
    x = torch.randn(1, 8, 3, 4)
    theta, phi, g = (conv(x)[0].flatten(1) for conv in (block.theta, block.phi, block.g))  # (4, 12) each
    y = torch.zeros(4, 12)
    for u in range(12):
        energies = torch.stack([theta[:, u] @ phi[:, i] / 2.0 for i in range(12)])  # sqrt(C' = 4) = 2
        weights = energies.exp() / energies.exp().sum()
        y[:, u] = sum(weights[i] * g[:, i] for i in range(12))
    z = F.conv2d(y.reshape(1, 4, 3, 4), block.conv_out.weight)
    n = block.norm
    expected = (
        x
        + (z - n.running_mean.view(1, -1, 1, 1))
        / torch.sqrt(n.running_var.view(1, -1, 1, 1) + n.eps)
        * (n.weight.view(1, -1, 1, 1))
        + n.bias.view(1, -1, 1, 1)
    )
    with torch.no_grad():
        assert torch.allclose(block(x), expected, atol=1e-5)
