"""CE2P + RCCA: shapes at both output strides, the RCCA context where the CCL hook looks, a training step."""

from __future__ import annotations

import torch

from ccnet.config import load_config
from ccnet.engine.training_model import ModelWithLossModules
from ccnet.losses import CategoryConsistentLoss, SegmentationLoss
from ccnet.models import create_model, get_model_entry, list_models
from ccnet.models.ccnet import ParsingAux
from ccnet.ops import RecurrentCrissCrossAttention


def test_registered():
    assert {"ce2p_rcca_r101_os16", "ce2p_rcca_r50_os16", "ce2p_rcca_tiny"} <= set(list_models("ce2p_*"))


def test_tiny_shapes_train_and_eval():
    torch.manual_seed(0)
    model = create_model("ce2p_rcca_tiny", num_classes=5)
    x = torch.randn(2, 3, 37, 50)
    out, aux = model.train()(x)
    assert out.shape == (2, 5, 37, 50) and isinstance(aux, ParsingAux)
    assert aux.parsing.shape == (2, 5, 37, 50) and aux.edge.shape == (2, 2, 37, 50)
    out, aux = model.eval()(x)
    assert out.shape == (2, 5, 37, 50) and aux is None
    assert model.num_classes == 5 and model.align_corners and model.output_stride == 8


def test_r50_at_output_stride_8():
    """The default is CE2P's stride 16 (registered); stride 8 (mmseg's CCNet) is an override."""
    assert get_model_entry("ce2p_rcca_r101_os16").architecture.output_stride == 16
    model = create_model("ce2p_rcca_r50_os16", num_classes=20, output_stride=8).eval()
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        features = model.backbone(x)
        out = model(x).out
    assert [tuple(f.shape[1:]) for f in features] == [(256, 12, 12), (512, 6, 6), (1024, 6, 6), (2048, 6, 6)]
    assert out.shape == (1, 20, 48, 48) and model.output_stride == 8
    assert isinstance(model.head.context, RecurrentCrissCrossAttention) and model.head.context.recurrence == 2


def test_training_step_with_edge_loss_and_ccl():
    """The training loop's path: ModelWithLossModules (its CCL hook on model.head.context), the loss with the
    edge term, backward reaching the edge branch, the decoder and the attention."""
    torch.manual_seed(0)
    model = create_model("ce2p_rcca_tiny", num_classes=4).train()
    ccl = CategoryConsistentLoss(model.head.conv_out.conv.in_channels, 4)
    trainee = ModelWithLossModules(model, ccl)
    x, target = torch.randn(2, 3, 32, 32), torch.randint(0, 4, (2, 32, 32))
    target[:, :4] = 255
    output, embeddings = trainee(x)
    assert embeddings.shape == (2, 16, 32, 32)
    losses = SegmentationLoss(aux_weight=1.0)(output.out, output.aux, target)
    assert set(losses) == {"loss", "main", "aux", "edge"}
    (losses["loss"] + ccl.loss_from_embeddings(embeddings, target)[0]).backward()
    for module in (model.head.edge, model.head.decoder, model.head.fusion, model.backbone.conv2):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    assert model.head.context.cca.gamma.grad.abs().sum() > 0  # the attention scale (0 at init: only it)


def test_lip_recipes_load():
    ce2p = load_config("ce2p-rcca_r101-os16_4xb10-115k_lip-473x473", [])
    assert ce2p.model.name == "ce2p_rcca_r101_os16" and ce2p.data.dataset == "lip"
    assert (ce2p.optim.lr, ce2p.train.batch_size, ce2p.train.max_iters) == (0.007, 40, 115000)
    assert ce2p.eval.flip and ce2p.loss.ccl.enabled and ce2p.loss.aux_weight == 1.0
    for depth in (50, 101):
        for iters in (80, 160):
            config = load_config(f"ccnet_r{depth}-d8_4xb4-{iters}k_lip-473x473", [])
            assert config.model.name == f"ccnet_r{depth}_d8" and config.train.max_iters == iters * 1000
    food = load_config("ccnet_r50-d8_4xb2-80k_foodseg103-512x1024", [])
    assert (food.data.dataset, food.data.crop_size, food.train.max_iters) == (
        "foodseg103",
        (512, 1024),
        80000,
    )
    assert food.data.val_split == "test" and food.eval.mode == "whole" and not food.eval.flip
