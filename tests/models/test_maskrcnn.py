"""Mask R-CNN + context module: placement, torchvision's published checkpoint layout, equivalence with
torchvision's own model at gamma = 0, and the tiny CPU variant.

The oracle of the equivalence tests is torchvision's ``maskrcnn_resnet50_fpn`` itself: our model, loaded
with its (random, fixed-seed) weights saved in the published v1 layout, must compute what it computes."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

import ccnet
from ccnet.models import save_weights
from ccnet.models.convert import CheckpointMismatchError
from ccnet.models.maskrcnn import StageWithContext, upgrade_legacy_keys

SIZE = {"min_size": 128, "max_size": 160, "box_score_thresh": 0.0, "detections_per_img": 20}

TWIN = {"box_score_thresh": 0.0, "detections_per_img": 10}


def _fast(model):
    """Fewer proposals at test time (speed); the same for both models compared."""
    model.rpn._pre_nms_top_n["testing"] = model.rpn._post_nms_top_n["testing"] = 100
    return model.eval()


def _published_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's v1 COCO file layout: no BN step counters, pre-``Conv2dNormActivation`` head names."""
    out = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        key = key.replace("rpn.head.conv.0.0.", "rpn.head.conv.")
        for index in range(4):
            key = key.replace(f"roi_heads.mask_head.{index}.0.", f"roi_heads.mask_head.mask_fcn{index + 1}.")
        out[key] = value
    return out


def _freeze_batchnorm(module: nn.Module) -> None:
    """BatchNorm2d -> torchvision's FrozenBatchNorm2d with the same statistics and affine, in place."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key))
            setattr(module, name, frozen)
        else:
            _freeze_batchnorm(child)


@pytest.fixture(scope="module")
def torchvision_model(tmp_path_factory):
    """(torchvision's model in eval mode, its weights saved in the published layout). Built with
    ``weights=None`` torchvision uses trainable BatchNorm; with its published weights it builds the
    backbone with FrozenBatchNorm2d, as here (same statistics: the same function, other rounding)."""
    torch.manual_seed(0)
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        min_size=128,
        max_size=160,
        box_score_thresh=0.0,
        box_detections_per_img=20,
    )
    with torch.no_grad():  # statistics and affines that are not the identity, so every BN matters
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
        _freeze_batchnorm(model.backbone.body)  # what torchvision builds for its published weights
        # torchvision's classifier starts at std 0.01: near-equal scores whose order rounding could flip
        model.roi_heads.box_predictor.cls_score.weight.mul_(10)
    path = tmp_path_factory.mktemp("weights") / "maskrcnn_resnet50_fpn_coco.pth"
    state = _published_layout(model.state_dict())
    assert "rpn.head.conv.weight" in state and "roi_heads.mask_head.mask_fcn1.weight" in state
    torch.save(state, path)
    return _fast(model), path


@pytest.fixture(scope="module")
def image():
    return torch.rand(3, 120, 150, generator=torch.Generator().manual_seed(1))


def _features(model, image):
    images, _ = model.transform([image])
    return model.backbone(images.tensors)


def test_registered_names_and_placement():
    names = ccnet.list_models("maskrcnn_*")
    for prefix in ("maskrcnn_r50_fpn", "maskrcnn_r101_fpn", "maskrcnn_tiny"):
        assert {prefix, prefix + "_rcca", prefix + "_nonlocal"} <= set(names)
    model = ccnet.create_model("maskrcnn_tiny_rcca", num_classes=3).eval()
    stage = model.backbone.body.layer3
    assert isinstance(stage, StageWithContext) and stage.insert_before == 1  # 2 blocks: before the last
    seen = {}
    model.context.register_forward_hook(lambda m, i, o: seen.update(context_out=o))
    stage[1].register_forward_pre_hook(lambda m, i: seen.update(last_block_in=i[0]))
    stage[0].register_forward_hook(lambda m, i, o: seen.update(first_block_out=o))
    with torch.no_grad():
        model([torch.rand(3, 64, 64)])
    # the module runs between the blocks: on the first block's output, feeding the last block
    assert seen["context_out"] is seen["last_block_in"]
    assert seen["context_out"].shape[1] == seen["first_block_out"].shape[1] == 64
    assert model.context.cca.gamma.item() == 0.0 and model.context.recurrence == 2


def test_loads_torchvision_checkpoint_and_matches_its_outputs_at_gamma_zero(torchvision_model, image):
    reference, path = torchvision_model
    model = _fast(ccnet.create_model("maskrcnn_r50_fpn_rcca", pretrained=str(path), **SIZE))
    assert model.num_classes == 91
    assert model.context.cca.gamma.item() == 0.0
    with torch.no_grad():
        expected, ours = reference([image])[0], model([image])[0]
        assert len(expected["boxes"]) > 0  # score threshold 0: the comparison is not of two empty lists
        for key in ("boxes", "scores", "labels", "masks"):
            torch.testing.assert_close(ours[key], expected[key])

        # a non-zero gamma mixes in the attention: the detections change
        model.context.cca.gamma.fill_(1.0)
        changed = model([image])[0]
        assert changed["boxes"].shape != expected["boxes"].shape or not torch.allclose(
            changed["boxes"], expected["boxes"], atol=0.1
        )


def test_context_twins_match_the_baseline_at_initialisation(tmp_path):
    torch.manual_seed(0)
    baseline = ccnet.create_model("maskrcnn_tiny", num_classes=3, **TWIN).eval()
    for module in baseline.modules():  # BN statistics that are not the identity
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = save_weights(tmp_path / "baseline.pth", baseline.state_dict())
    image = torch.rand(3, 80, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = baseline([image])[0]
        for name in ("maskrcnn_tiny_rcca", "maskrcnn_tiny_nonlocal"):
            twin = ccnet.create_model(name, pretrained=path, **TWIN).eval()
            got = twin([image])[0]
            assert len(expected["boxes"]) > 0
            for key in ("boxes", "scores", "labels", "masks"):
                torch.testing.assert_close(got[key], expected[key])
    assert twin.context.theta.out_channels == 32  # the non-local block at C/2 (the NL paper's)


def test_checkpoint_that_does_not_fit_is_listed(tmp_path):
    state = ccnet.create_model("maskrcnn_tiny", num_classes=3).state_dict()
    missing = {k: v for k, v in state.items() if k != "roi_heads.box_head.fc6.weight"}
    save_weights(tmp_path / "missing.pth", missing)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys: roi_heads\.box_head\.fc6\.weight"):
        ccnet.create_model("maskrcnn_tiny_rcca", pretrained=tmp_path / "missing.pth")
    save_weights(tmp_path / "extra.pth", {**state, "backbone.body.layer5.0.conv1.weight": torch.zeros(1)})
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys: backbone\.body\.layer5"):
        ccnet.create_model("maskrcnn_tiny", pretrained=tmp_path / "extra.pth")
    with pytest.raises(ValueError, match="3 classes"):
        ccnet.create_model("maskrcnn_tiny", pretrained=tmp_path / "missing.pth", num_classes=5)
    save_weights(tmp_path / "full.pth", state)
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatches: backbone\.fpn"):
        ccnet.create_model("maskrcnn_tiny", pretrained=tmp_path / "full.pth", fpn_channels=16)


def test_legacy_key_names_are_upgraded():
    state = {
        "rpn.head.conv.weight": 1,
        "rpn.head.cls_logits.bias": 2,
        "roi_heads.mask_head.mask_fcn3.bias": 3,
    }
    assert upgrade_legacy_keys(state) == {
        "rpn.head.conv.0.0.weight": 1,
        "rpn.head.cls_logits.bias": 2,
        "roi_heads.mask_head.2.0.bias": 3,
    }


def test_tiny_model_trains_the_context_module_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = ccnet.create_model("maskrcnn_tiny_rcca", num_classes=3).train()
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 8:40, 10:50] = 1
    target = {"boxes": torch.tensor([[10.0, 8.0, 50.0, 40.0]]), "labels": torch.tensor([2]), "masks": masks}
    losses = model([torch.rand(3, 64, 64)], [target])
    assert set(losses) == {
        "loss_classifier",
        "loss_box_reg",
        "loss_mask",
        "loss_objectness",
        "loss_rpn_box_reg",
    }
    sum(losses.values()).backward()
    assert model.context.cca.gamma.grad is not None and model.context.cca.gamma.grad != 0

    # our saved weights (with the trained module) come back whole
    with torch.no_grad():
        model.context.cca.gamma.fill_(0.5)
    save_weights(tmp_path / "tiny.safetensors", model.state_dict(), {"arch": "maskrcnn_tiny_rcca"})
    again = ccnet.create_model("maskrcnn_tiny_rcca", pretrained=tmp_path / "tiny.safetensors")
    assert again.num_classes == 3 and again.context.cca.gamma.item() == 0.5
    with pytest.raises(ValueError, match="not 'maskrcnn_r50_fpn'"):
        ccnet.create_model("maskrcnn_r50_fpn", pretrained=tmp_path / "tiny.safetensors")
    fresh = ccnet.create_model(
        "maskrcnn_tiny_rcca", num_classes=5, pretrained=tmp_path / "tiny.safetensors", new_classifier=True
    )
    assert fresh.roi_heads.box_predictor.cls_score.out_features == 5
    torch.testing.assert_close(fresh.backbone.body.conv1.weight, model.backbone.body.conv1.weight)


def test_options_and_imagenet_backbone_file(tmp_path):
    model = ccnet.create_model("maskrcnn_tiny", num_classes=2, context="rcca", recurrence=1, context_block=0)
    assert model.context.recurrence == 1 and model.backbone.body.layer3.insert_before == 0
    assert model.context.cca.query_conv.in_channels == 32  # before the first block: layer2's width
    with pytest.raises(ValueError, match="unknown model option"):
        ccnet.create_model("maskrcnn_tiny", num_classes=2, output_stride=8)
    with pytest.raises(ValueError, match="context_block=5"):
        ccnet.create_model("maskrcnn_tiny", num_classes=2, context_block=5)

    torch.manual_seed(0)
    resnet = torchvision.models.resnet50(weights=None)
    torch.save(resnet.state_dict(), tmp_path / "resnet50.pth")
    model = ccnet.create_model(
        "maskrcnn_r50_fpn", num_classes=2, backbone_weights=str(tmp_path / "resnet50.pth")
    )
    torch.testing.assert_close(model.backbone.body.layer4[2].conv3.weight, resnet.layer4[2].conv3.weight)
    # stem and res2 frozen, res3..res5 trained (the 1x recipe)
    assert not model.backbone.body.layer1[0].conv1.weight.requires_grad
    assert model.backbone.body.layer2[0].conv1.weight.requires_grad
