"""Converted published checkpoints reproduce the published networks exactly.

The expected logits come from ``published_layouts.reference_forward``: a functional forward written from
the documented architectures that reads the checkpoint tensors under their original names.
"""

from __future__ import annotations

import pytest
import torch

from ccnet.models import (
    CheckpointMismatchError,
    convert_checkpoint,
    create_model,
    detect_source,
    load_checkpoint_strict,
)
from tests.models.published_layouts import (
    AUTHORS,
    MMSEG,
    SSSEG,
    authors_plan,
    random_checkpoint,
    reference_forward,
    v1c_plan,
)

TOL = 1e-4
# The authors' InPlace-ABN conversion is exact: float32 rounding alone leaves ~2e-6 on these logits (measured
# 1.4e-6 main, 1.9e-6 aux), while forgetting the ``+ eps`` on |w| moves them by 2e-5 .. 6e-5: 1e-4 would not
# see it.
AUTHORS_TOL = 1e-5


def _logits(model, x):
    """Eval-mode (main logits at input size, aux logits at feature size)."""
    model.eval()
    with torch.no_grad():
        return model(x).out.double(), model.aux_head(model.backbone(x)[0]).double()


def test_mmseg_r50_d8_matches_reference(mmseg_r50_checkpoint, image_batch):
    state = mmseg_r50_checkpoint["state_dict"]
    assert state["decode_head.cca.gamma.scale"].shape == ()  # mmseg stores a 0-dim scale
    model = create_model("ccnet_r50_d8", num_classes=19, align_corners=True)
    load_checkpoint_strict(model, convert_checkpoint(mmseg_r50_checkpoint, source="mmseg"))
    out, aux = _logits(model, image_batch)

    ref_out, ref_aux = reference_forward(state, MMSEG, image_batch, plan=v1c_plan(50, 8), align_corners=True)
    assert (out - ref_out).abs().max() <= TOL
    assert (aux - ref_aux).abs().max() <= TOL

    # The test has teeth: attention, contracted dilation and align_corners each change the logits.
    no_attention, _ = reference_forward(state, MMSEG, image_batch, plan=v1c_plan(50, 8), recurrence=0)
    uncontracted = [[(s, max(d for _, d in stage)) for s, _ in stage] for stage in v1c_plan(50, 8)]
    other_dilation, _ = reference_forward(state, MMSEG, image_batch, plan=uncontracted, align_corners=True)
    other_corners, _ = reference_forward(state, MMSEG, image_batch, plan=v1c_plan(50, 8), align_corners=False)
    for wrong in (no_attention, other_dilation, other_corners):
        assert (wrong - ref_out).abs().max() > 100 * TOL


def test_ssseg_r50_d16_matches_reference(image_batch):
    state = random_checkpoint(SSSEG, depth=50, stem_widths=(32, 32, 64), num_classes=21, aux_channels=512)
    model = create_model("ccnet_r50_d16", num_classes=21, aux_channels=512)
    load_checkpoint_strict(model, convert_checkpoint({"epoch": 60, "model": state}, source="ssseg"))
    out, aux = _logits(model, image_batch)

    ref_out, ref_aux = reference_forward(state, SSSEG, image_batch, plan=v1c_plan(50, 16))
    assert (out - ref_out).abs().max() <= TOL
    assert (aux - ref_aux).abs().max() <= TOL


def test_authors_r101_matches_reference():
    x = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(2))  # keep it small
    state = random_checkpoint(AUTHORS, depth=101, stem_widths=(64, 64, 128), num_classes=19, aux_channels=512)
    assert (state["head.conva.1.weight"] < 0).any()  # InPlace-ABN weights may be negative
    saved = {f"module.{k}": v for k, v in state.items()}  # saved from DataParallel
    converted = convert_checkpoint(saved, source="authors")
    assert converted["head.context.cca.gamma"].shape == ()
    assert "aux_head.conv_in.norm.num_batches_tracked" in converted
    model = create_model("ccnet_r101_d8_authors", num_classes=19)
    load_checkpoint_strict(model, converted)
    out, aux = _logits(model, x)

    ref_out, ref_aux = reference_forward(
        state, AUTHORS, x, plan=authors_plan(), ceil_mode=True, leaky=True, align_corners=True
    )
    assert ref_aux.shape[-1] == 7  # 48 -> 24 -> ceil-mode max-pool 13 (floor: 12) -> 7: ceil_mode matters
    assert (out - ref_out).abs().max() <= AUTHORS_TOL
    assert (aux - ref_aux).abs().max() <= AUTHORS_TOL


def test_authors_inplace_abn_tensors_by_hand():
    # One InPlace-ABN of the head and the aux conv (with a bias) + BN, values chosen by hand. InPlace-ABN
    # scales by |w| + eps (eps = 1e-5, its default); a conv bias b before a BN equals running_mean - b.
    w = torch.tensor([-0.5, 0.25, 0.0, -2.0])
    state = {
        "head.conva.0.weight": torch.zeros(4, 2, 3, 3),
        "head.conva.1.weight": w,
        "head.conva.1.bias": torch.tensor([0.1, -0.2, 0.3, 0.0]),
        "head.conva.1.running_mean": torch.tensor([1.0, 2.0, 3.0, 4.0]),
        "head.conva.1.running_var": torch.tensor([0.5, 1.0, 1.5, 2.0]),
        "dsn.0.weight": torch.zeros(2, 2, 3, 3),
        "dsn.0.bias": torch.tensor([0.25, -1.5]),
        "dsn.1.weight": torch.tensor([0.75, -0.125]),
        "dsn.1.bias": torch.tensor([0.0, 1.0]),
        "dsn.1.running_mean": torch.tensor([1.0, 1.0]),
        "dsn.1.running_var": torch.tensor([4.0, 9.0]),
    }
    out = convert_checkpoint(state, source="authors")
    # float32 holds these to ~2e-7; a missing eps is 1e-5 off
    head_weight, aux_weight = out["head.conv_in.norm.weight"], out["aux_head.conv_in.norm.weight"]
    assert torch.allclose(head_weight, torch.tensor([0.50001, 0.25001, 0.00001, 2.00001]), rtol=0, atol=1e-6)
    assert torch.allclose(aux_weight, torch.tensor([0.75001, 0.12501]), rtol=0, atol=1e-6)
    assert torch.equal(out["aux_head.conv_in.norm.running_mean"], torch.tensor([0.75, 2.5]))  # 1 - b
    assert "aux_head.conv_in.conv.bias" not in out
    # everything else passes unchanged; InPlace-ABN has no batch counter: 0
    assert torch.equal(out["head.conv_in.norm.bias"], torch.tensor([0.1, -0.2, 0.3, 0.0]))
    assert torch.equal(out["head.conv_in.norm.running_var"], torch.tensor([0.5, 1.0, 1.5, 2.0]))
    assert torch.equal(out["aux_head.conv_in.norm.running_var"], torch.tensor([4.0, 9.0]))
    assert out["head.conv_in.norm.num_batches_tracked"].item() == 0


def test_detect_source():
    mmseg = {"backbone.stem.0.weight": torch.zeros(1), "decode_head.conv_seg.bias": torch.zeros(1)}
    assert detect_source(mmseg) == "mmseg"
    ssseg = {"backbone_net.stem.0.weight": torch.zeros(1), "decoder.4.bias": torch.zeros(1)}
    assert detect_source(ssseg) == "ssseg"
    assert detect_source({"head.conva.0.weight": torch.zeros(1), "dsn.3.bias": torch.zeros(1)}) == "authors"
    assert detect_source(
        {"backbone.conv1.0.weight": torch.zeros(1), "head.conv_in.conv.weight": torch.zeros(1)}
    ) == ("ccnet")
    with pytest.raises(CheckpointMismatchError, match="cannot tell"):
        detect_source({"fc.weight": torch.zeros(1)})


def test_wrong_family_lists_unknown_keys():
    ssseg = {"backbone_net.stem.0.weight": torch.zeros(1), "conv_before_cca.0.weight": torch.zeros(1)}
    with pytest.raises(
        CheckpointMismatchError, match=r"not in the mmseg layout: .*conv_before_cca\.0\.weight"
    ):
        convert_checkpoint(ssseg, source="mmseg")
    with pytest.raises(ValueError, match="source"):
        convert_checkpoint(ssseg, source="detectron")


def test_mismatching_checkpoint_lists_keys(mmseg_r50_checkpoint):
    state = dict(mmseg_r50_checkpoint["state_dict"])
    model = create_model("ccnet_r50_d8", num_classes=21)  # the checkpoint has 19 classes
    with pytest.raises(
        CheckpointMismatchError, match=r"head\.classifier\.weight: checkpoint \(19, 512, 1, 1\)"
    ):
        load_checkpoint_strict(model, convert_checkpoint(state, source="mmseg"))

    del state["decode_head.cca.query_conv.bias"]
    state["backbone.layer4.3.conv1.weight"] = torch.zeros(512, 2048, 1, 1)  # R-50 has 3 blocks in layer4
    model = create_model("ccnet_r50_d8", num_classes=19)
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint_strict(model, convert_checkpoint(state, source="mmseg"))
    message = str(info.value)
    assert "missing keys: head.context.cca.query_conv.bias" in message
    assert "unexpected keys: backbone.layer4.3.conv1.weight" in message


def test_gamma_must_hold_one_value():
    with pytest.raises(CheckpointMismatchError, match="gamma"):
        convert_checkpoint({"head.cca.gamma": torch.zeros(2), "dsn.3.bias": torch.zeros(1)}, source="authors")
