"""The timm backbones have exactly the published dilated-ResNet geometry (every conv pinned)."""

from __future__ import annotations

import urllib.error

import pytest
import torch
from torch import nn

from ccnet.models import build_backbone, convert_backbone_checkpoint, create_model, load_checkpoint_strict
from tests.models.published_layouts import AUTHORS, authors_plan, block_plan, random_checkpoint, v1c_plan

STEM_V1C = (32, 32, 64)
STEM_AUTHORS = (64, 64, 128)


def expected_convs(stem_widths, plan) -> dict[str, tuple]:
    """name -> (in, out, kernel, stride, padding, dilation) from the documented architecture."""
    convs = {}
    cin = 3
    for index, width in zip((0, 3, 6), stem_widths, strict=True):
        convs[f"conv1.{index}"] = (cin, width, 3, 2 if index == 0 else 1, 1, 1)
        cin = width
    for stage, blocks in enumerate(plan):
        planes = 64 * 2**stage
        for b, (stride, dilation) in enumerate(blocks):
            p = f"layer{stage + 1}.{b}"
            convs[f"{p}.conv1"] = (cin, planes, 1, 1, 0, 1)
            convs[f"{p}.conv2"] = (planes, planes, 3, stride, dilation, dilation)
            convs[f"{p}.conv3"] = (planes, 4 * planes, 1, 1, 0, 1)
            if b == 0:
                convs[f"{p}.downsample.0"] = (cin, 4 * planes, 1, stride, 0, 1)
            cin = 4 * planes
    return convs


def actual_convs(model: nn.Module) -> dict[str, tuple]:
    return {
        name: (m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0], m.dilation[0])
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
    }


@pytest.mark.parametrize(
    ("name", "depth", "output_stride"),
    [
        ("resnet50_v1c", 50, 8),
        ("resnet50_v1c", 50, 16),
        ("resnet101_v1c", 101, 8),
        ("resnet101_v1c", 101, 16),
    ],
)
def test_v1c_geometry(name, depth, output_stride):
    with torch.device("meta"):  # structure only
        model = build_backbone(name, output_stride=output_stride)
    assert actual_convs(model) == expected_convs(STEM_V1C, v1c_plan(depth, output_stride))
    assert model.maxpool.kernel_size == 3 and model.maxpool.stride == 2 and model.maxpool.padding == 1
    assert not model.maxpool.ceil_mode
    assert not any(isinstance(m, nn.AvgPool2d) for m in model.modules())  # V1c: conv downsample only
    assert model.feature_info.channels() == [1024, 2048]
    assert model.feature_info.reduction() == [output_stride, output_stride]


def test_contracted_dilation_matches_mmseg_rule():
    # The documented rule, spelled out: D8 layer3 (1, 2, 2, ...), layer4 (2, 4, 4); D16 layer4 (1, 2, 2).
    d8 = v1c_plan(50, 8)
    assert [d for _, d in d8[2]] == [1, 2, 2, 2, 2, 2] and [d for _, d in d8[3]] == [2, 4, 4]
    d16 = v1c_plan(50, 16)
    assert [d for _, d in d16[2]] == [1] * 6 and [d for _, d in d16[3]] == [1, 2, 2]
    assert block_plan(50, (1, 2, 1, 1), (1, 1, 2, 4), contract=False)[3] == [(1, 4)] * 3


def test_authors_geometry():
    with torch.device("meta"):
        model = build_backbone("resnet101_ccnet", output_stride=8)
    assert actual_convs(model) == expected_convs(STEM_AUTHORS, authors_plan())
    assert model.maxpool.ceil_mode


def test_features_at_stride(image_batch):
    model = build_backbone("resnet50_v1c", output_stride=16).eval()
    with torch.no_grad():
        stage3, stage4 = model(image_batch)
    assert stage3.shape == (1, 1024, 4, 4) and stage4.shape == (1, 2048, 4, 4)


def test_any_timm_backbone_channels_from_feature_info():
    model = create_model("ccnet_r50_d8", num_classes=3, backbone="test_resnet", channels=32, aux_channels=16)
    c3, c4 = model.backbone.feature_info.channels()
    assert (c3, c4) != (1024, 2048)
    assert model.head.conv_in.conv.in_channels == c4 and model.head.bottleneck.conv.in_channels == c4 + 32
    assert model.aux_head.conv_in.conv.in_channels == c3
    assert model.eval()(torch.zeros(2, 3, 40, 56)).out.shape == (2, 3, 40, 56)


def test_unknown_backbone_lists_close_names():
    with pytest.raises(ValueError, match="resnet50_v1c"):
        build_backbone("resnet50_v1")


def test_syncbn_everywhere():
    with torch.device("meta"):
        model = create_model("ccnet_r50_d8", num_classes=19, norm="syncbn")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, nn.SyncBatchNorm) for m in norms)
    with pytest.raises(ValueError, match="norm"):
        build_backbone("resnet50_v1c", norm="groupnorm")


def test_imagenet_weights_in_mmseg_layout(tmp_path, mmseg_r50_checkpoint):
    # open-mmlab's resnet50_v1c file: mmseg backbone keys without prefix, plus the ImageNet classifier.
    source = mmseg_r50_checkpoint["state_dict"]
    imagenet = {k.removeprefix("backbone."): v for k, v in source.items() if k.startswith("backbone.")}
    imagenet["fc.weight"], imagenet["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    path = tmp_path / "resnet50_v1c.pth"
    torch.save({"state_dict": imagenet}, path)

    model = create_model("ccnet_r50_d8", num_classes=19, backbone_weights=str(path))
    backbone = model.backbone.state_dict()
    assert torch.equal(backbone["conv1.0.weight"], imagenet["stem.0.weight"])
    assert torch.equal(backbone["conv1.4.running_var"], imagenet["stem.4.running_var"])
    assert torch.equal(backbone["bn1.weight"], imagenet["stem.7.weight"])
    assert torch.equal(backbone["layer3.0.downsample.1.bias"], imagenet["layer3.0.downsample.1.bias"])


def test_imagenet_weights_offline_names_the_url(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(RuntimeError, match=r"resnet50_v1c-2cccc1ad\.pth"):
        create_model("ccnet_r50_d8", num_classes=19, backbone_weights="open-mmlab")
    with pytest.raises(ValueError, match="open-mmlab"):
        create_model("ccnet_r50_d8", num_classes=19, backbone="test_resnet", backbone_weights="open-mmlab")


@pytest.mark.filterwarnings("ignore:.*meta parameter")  # loading into a meta-device model only checks keys
def test_imagenet_weights_in_authors_layout():
    # MIT CSAIL ImageNet files used by the authors: conv1/bn1/conv2/bn2/conv3/bn3 stem, plain BatchNorm
    # (no |w| + eps transform, unlike their InPlace-ABN segmentation checkpoints), no num_batches_tracked.
    full = random_checkpoint(AUTHORS, depth=101, stem_widths=STEM_AUTHORS, num_classes=2, aux_channels=8)
    imagenet = {k: v for k, v in full.items() if not k.startswith(("head.", "dsn."))}
    imagenet["fc.weight"] = torch.zeros(1000, 2048)
    converted = convert_backbone_checkpoint(imagenet)
    assert converted["conv1.3.weight"] is imagenet["conv2.weight"]
    assert converted["bn1.weight"] is imagenet["bn3.weight"]  # unchanged, may be negative
    assert converted["layer4.2.bn3.num_batches_tracked"] == 0
    with torch.device("meta"):
        backbone = build_backbone("resnet101_ccnet")
    load_checkpoint_strict(backbone, converted)  # every key and shape fits
