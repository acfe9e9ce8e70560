"""The zoo table holds every published CCNet checkpoint with consistent metadata."""

from __future__ import annotations

import pytest

from ccnet.models import ZOO, get_weights, list_models, list_weights


def test_every_published_checkpoint_is_listed():
    assert len(list_weights("mmseg:*")) == 16
    assert len(list_weights("ssseg:*")) == 12
    assert len(ZOO) == 28


@pytest.mark.parametrize("name", sorted(ZOO))
def test_entry_is_consistent(name):
    entry = ZOO[name]
    assert entry.name == name and entry.arch in list_models()
    assert entry.num_classes == {"cityscapes": 19, "ade20k": 150, "voc12aug": 21}[entry.dataset]
    assert entry.url.endswith(".pth")
    assert entry.preprocess.mean == (123.675, 116.28, 103.53) and not entry.preprocess.bgr
    run = name.split(":", 1)[1]
    if entry.source == "mmseg":
        assert entry.url.startswith(f"https://download.openmmlab.com/mmsegmentation/v0.5/ccnet/{run}/{run}_")
        slide = "769x769" in run
        assert entry.align_corners == slide and entry.test_mode == ("slide" if slide else "whole")
        assert entry.test_stride == ((513, 513) if slide else None)
        assert entry.model_kwargs["aux_channels"] == 256
    else:
        assert (
            entry.url
            == f"https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_ccnet/{run}_train.pth"
        )
        assert not entry.align_corners and entry.test_mode == "whole"
        assert entry.model_kwargs["aux_channels"] == 512
        depth, stride = run.removeprefix("ccnet_resnet").split("_")[0].split("os")
        assert entry.arch == f"ccnet_r{depth}_d{stride}"


def test_reported_numbers_spot_check():
    # Values copied from the published tables (recipes.md).
    assert get_weights("mmseg:ccnet_r50-d8_769x769_80k_cityscapes").miou_ms_flip == 81.08
    assert get_weights("mmseg:ccnet_r101-d8_512x512_160k_ade20k").miou == 43.71
    assert get_weights("ssseg:ccnet_resnet101os16_ade20k").miou == 42.95
    assert get_weights("ssseg:ccnet_resnet50os8_cityscapes").crop_size == (512, 1024)
    assert get_weights("mmseg:ccnet_r50-d8_512x512_20k_voc12aug").test_scale == (2048, 512)


def test_unknown_weights_name():
    with pytest.raises(ValueError, match="ssseg:ccnet_resnet50os8_voc"):
        get_weights("ssseg:ccnet_resnet50os8_vocc")
