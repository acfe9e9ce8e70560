"""The zoo table holds every published CCNet checkpoint with consistent metadata."""

from __future__ import annotations

import pytest

from ccnet.models import ZOO, get_weights, list_models, list_weights


def test_every_published_checkpoint_is_listed():
    assert len(list_weights("mmseg:*")) == 16
    assert len(list_weights("ssseg:*")) == 12
    assert len(ZOO) == 28


# The published tables, copied as they are (mmsegmentation's CCNet README and configs; SSSegmentation's
# model store): run name -> (file stamp, mIoU, mIoU ms+flip). Nothing here is derived from the zoo's code.
MMSEG_PUBLISHED = {
    "ccnet_r50-d8_512x1024_40k_cityscapes": ("20200616_142517-4123f401", 77.76, 78.87),
    "ccnet_r101-d8_512x1024_40k_cityscapes": ("20200616_142540-a3b84ba6", 76.35, 78.19),
    "ccnet_r50-d8_769x769_40k_cityscapes": ("20200616_145125-76d11884", 78.46, 79.93),
    "ccnet_r101-d8_769x769_40k_cityscapes": ("20200617_101428-4f57c8d0", 76.94, 78.62),
    "ccnet_r50-d8_512x1024_80k_cityscapes": ("20200617_010421-869a3423", 79.03, 80.16),
    "ccnet_r101-d8_512x1024_80k_cityscapes": ("20200617_203935-ffae8917", 78.87, 79.90),
    "ccnet_r50-d8_769x769_80k_cityscapes": ("20200617_010421-73eed8ca", 79.29, 81.08),
    "ccnet_r101-d8_769x769_80k_cityscapes": ("20200618_011502-ad3cd481", 79.45, 80.66),
    "ccnet_r50-d8_512x512_80k_ade20k": ("20200615_014848-aa37f61e", 41.78, 42.98),
    "ccnet_r101-d8_512x512_80k_ade20k": ("20200615_014848-1f4929a3", 43.97, 45.13),
    "ccnet_r50-d8_512x512_160k_ade20k": ("20200616_084435-7c97193b", 42.08, 43.13),
    "ccnet_r101-d8_512x512_160k_ade20k": ("20200616_000644-e849e007", 43.71, 45.04),
    "ccnet_r50-d8_512x512_20k_voc12aug": ("20200617_193212-fad81784", 76.17, 77.51),
    "ccnet_r101-d8_512x512_20k_voc12aug": ("20200617_193212-0007b61d", 77.27, 79.02),
    "ccnet_r50-d8_512x512_40k_voc12aug": ("20200613_232127-c2a15f02", 75.96, 77.04),
    "ccnet_r101-d8_512x512_40k_voc12aug": ("20200613_232127-c30da577", 77.87, 78.90),
}
# Per config, from the mmseg config files: (arch, crop, iterations, classes, test protocol); the protocol is
# (test scale, align_corners, test mode, sliding stride). Only the 769x769 Cityscapes configs use
# align_corners=True and a sliding window (crop 769, stride 513).
CS_WHOLE = ((2048, 1024), False, "whole", None)
CS_SLIDE = ((2048, 1024), True, "slide", (513, 513))
WHOLE_512 = ((2048, 512), False, "whole", None)  # ADE20K and VOC
MMSEG_CONFIGS = {
    "ccnet_r50-d8_512x1024_40k_cityscapes": ("ccnet_r50_d8", (512, 1024), 40000, 19, CS_WHOLE),
    "ccnet_r101-d8_512x1024_40k_cityscapes": ("ccnet_r101_d8", (512, 1024), 40000, 19, CS_WHOLE),
    "ccnet_r50-d8_769x769_40k_cityscapes": ("ccnet_r50_d8", (769, 769), 40000, 19, CS_SLIDE),
    "ccnet_r101-d8_769x769_40k_cityscapes": ("ccnet_r101_d8", (769, 769), 40000, 19, CS_SLIDE),
    "ccnet_r50-d8_512x1024_80k_cityscapes": ("ccnet_r50_d8", (512, 1024), 80000, 19, CS_WHOLE),
    "ccnet_r101-d8_512x1024_80k_cityscapes": ("ccnet_r101_d8", (512, 1024), 80000, 19, CS_WHOLE),
    "ccnet_r50-d8_769x769_80k_cityscapes": ("ccnet_r50_d8", (769, 769), 80000, 19, CS_SLIDE),
    "ccnet_r101-d8_769x769_80k_cityscapes": ("ccnet_r101_d8", (769, 769), 80000, 19, CS_SLIDE),
    "ccnet_r50-d8_512x512_80k_ade20k": ("ccnet_r50_d8", (512, 512), 80000, 150, WHOLE_512),
    "ccnet_r101-d8_512x512_80k_ade20k": ("ccnet_r101_d8", (512, 512), 80000, 150, WHOLE_512),
    "ccnet_r50-d8_512x512_160k_ade20k": ("ccnet_r50_d8", (512, 512), 160000, 150, WHOLE_512),
    "ccnet_r101-d8_512x512_160k_ade20k": ("ccnet_r101_d8", (512, 512), 160000, 150, WHOLE_512),
    "ccnet_r50-d8_512x512_20k_voc12aug": ("ccnet_r50_d8", (512, 512), 20000, 21, WHOLE_512),
    "ccnet_r101-d8_512x512_20k_voc12aug": ("ccnet_r101_d8", (512, 512), 20000, 21, WHOLE_512),
    "ccnet_r50-d8_512x512_40k_voc12aug": ("ccnet_r50_d8", (512, 512), 40000, 21, WHOLE_512),
    "ccnet_r101-d8_512x512_40k_voc12aug": ("ccnet_r101_d8", (512, 512), 40000, 21, WHOLE_512),
}
# SSSegmentation: run name -> (arch, classes, reported mIoU); aux head 512 channels, align_corners False.
SSSEG_PUBLISHED = {
    "ccnet_resnet50os8_voc": ("ccnet_r50_d8", 21, 77.43),
    "ccnet_resnet50os16_voc": ("ccnet_r50_d16", 21, 76.01),
    "ccnet_resnet101os8_voc": ("ccnet_r101_d8", 21, 78.02),
    "ccnet_resnet101os16_voc": ("ccnet_r101_d16", 21, 77.33),
    "ccnet_resnet50os8_ade20k": ("ccnet_r50_d8", 150, 42.47),
    "ccnet_resnet50os16_ade20k": ("ccnet_r50_d16", 150, 40.78),
    "ccnet_resnet101os8_ade20k": ("ccnet_r101_d8", 150, 44.00),
    "ccnet_resnet101os16_ade20k": ("ccnet_r101_d16", 150, 42.95),
    "ccnet_resnet50os8_cityscapes": ("ccnet_r50_d8", 19, 79.15),
    "ccnet_resnet50os16_cityscapes": ("ccnet_r50_d16", 19, 77.94),
    "ccnet_resnet101os8_cityscapes": ("ccnet_r101_d8", 19, 80.08),
    "ccnet_resnet101os16_cityscapes": ("ccnet_r101_d16", 19, 78.45),
}


def test_zoo_names_are_the_published_runs():
    assert set(ZOO) == {f"mmseg:{run}" for run in MMSEG_PUBLISHED} | {
        f"ssseg:{run}" for run in SSSEG_PUBLISHED
    }


@pytest.mark.parametrize("run", sorted(MMSEG_PUBLISHED))
def test_mmseg_entry_matches_the_published_table_and_config(run):
    entry = get_weights(f"mmseg:{run}")
    stamp, miou, miou_ms_flip = MMSEG_PUBLISHED[run]
    arch, crop, iters, classes, protocol = MMSEG_CONFIGS[run]
    assert entry.url == f"https://download.openmmlab.com/mmsegmentation/v0.5/ccnet/{run}/{run}_{stamp}.pth"
    assert (entry.miou, entry.miou_ms_flip) == (miou, miou_ms_flip)
    assert (entry.arch, entry.crop_size, entry.iters, entry.num_classes) == (arch, crop, iters, classes)
    assert (entry.test_scale, entry.align_corners, entry.test_mode, entry.test_stride) == protocol
    assert entry.source == "mmseg" and entry.model_kwargs["aux_channels"] == 256
    assert entry.preprocess.mean == (123.675, 116.28, 103.53) and not entry.preprocess.bgr
    assert entry.preprocess.std == (58.395, 57.12, 57.375) and entry.arch in list_models()


@pytest.mark.parametrize("run", sorted(SSSEG_PUBLISHED))
def test_ssseg_entry_matches_the_published_table(run):
    entry = get_weights(f"ssseg:{run}")
    arch, classes, miou = SSSEG_PUBLISHED[run]
    prefix = "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_ccnet/"
    assert entry.url == f"{prefix}{run}_train.pth"
    assert (entry.arch, entry.num_classes, entry.miou) == (arch, classes, miou)
    assert entry.source == "ssseg" and entry.model_kwargs["aux_channels"] == 512
    assert not entry.align_corners and entry.test_mode == "whole"
    assert entry.preprocess.mean == (123.675, 116.28, 103.53) and not entry.preprocess.bgr
    if run.endswith("cityscapes"):
        assert entry.crop_size == (512, 1024)


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
