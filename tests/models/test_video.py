"""The video model (``ccnet3d_*``): layout, shapes, attention windows and temporal reach, the 2-D twin at
T = 1, input errors, 2-D weights (zoo entries, files).

The oracle for the video path is the 2-D model: with one frame per window, 3-D criss-cross attention
reduces to 2-D criss-cross attention, so the video model given the 2-D weights must reproduce the 2-D
model's logits frame by frame (computed by the separate 2-D code path).
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from ccnet.clips import centre_index
from ccnet.models import (
    CCNetVideo,
    CheckpointMismatchError,
    SegmentationOutput,
    create_model,
    inflate_2d_state_dict,
    list_models,
    save_weights,
)
from ccnet.ops import RecurrentCrissCrossAttention3d
from tests.models.helpers import randomise

ZOO_NAME = "mmseg:ccnet_r50-d8_769x769_80k_cityscapes"
CONTEXT_CONVS = [f"head.context.cca.{c}_conv.weight" for c in ("query", "key", "value")]


def _pair(name: str = "tiny", num_classes: int = 3, **overrides) -> tuple[nn.Module, CCNetVideo]:
    """A randomised 2-D model (eval) and its video twin (eval) loaded with the same weights."""
    image_model = randomise(create_model(f"ccnet_{name}", num_classes=num_classes)).eval()
    video_model = create_model(f"ccnet3d_{name}", num_classes=num_classes, **overrides).eval()
    video_model.load_state_dict(inflate_2d_state_dict(image_model.state_dict(), video_model))
    return image_model, video_model


def _clip(*shape: int, seed: int = 0) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --- layout -------------------------------------------------------------------------------------------
def test_registered_builders():
    assert list_models("ccnet3d_*") == ["ccnet3d_r101_d8", "ccnet3d_r50_d8", "ccnet3d_tiny"]
    model = create_model("ccnet3d_r50_d8", num_classes=11, clip_length=5)
    assert isinstance(model, CCNetVideo) and model.arch == "ccnet3d_r50_d8" and model.pretrained_cfg is None
    assert (model.num_classes, model.clip_length, model.frames, model.output_stride) == (11, 5, "all", 8)
    assert isinstance(model.head.context, RecurrentCrissCrossAttention3d)
    assert model.head.context.recurrence == 2 and model.head.conv_out.conv.in_channels == 512
    assert model.aux_head.conv_in.conv.out_channels == 256 and not model.align_corners
    assert create_model("ccnet3d_tiny", num_classes=2).clip_length == 5
    custom = create_model("ccnet3d_tiny", num_classes=2, clip_length=3, frames="centre", recurrence=1)
    assert (custom.clip_length, custom.frames, custom.head.context.recurrence) == (3, "centre", 1)
    with pytest.raises(ValueError, match="context='rcca'"):
        create_model("ccnet3d_tiny", num_classes=2, context="nonlocal")


@pytest.mark.parametrize("name", ["tiny", "r50_d8", "r101_d8"])
def test_state_dict_is_the_2d_twins_with_3d_context_convs(name):
    torch.manual_seed(0)
    image_model = create_model(f"ccnet_{name}", num_classes=5)
    torch.manual_seed(0)
    video_model = create_model(f"ccnet3d_{name}", num_classes=5)
    image_state, video_state = image_model.state_dict(), video_model.state_dict()
    assert list(video_state) == list(image_state)
    for key, value in image_state.items():
        expected = (*value.shape, 1) if key in CONTEXT_CONVS else tuple(value.shape)
        assert tuple(video_state[key].shape) == expected, key
        # built from the same seed, the video model starts from the 2-D twin's weights
        assert torch.equal(video_state[key].reshape(value.shape), value), key
    count = sum(p.numel() for p in image_model.parameters())
    assert sum(p.numel() for p in video_model.parameters()) == count


# --- shapes -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("clip_length", "frames", "shape"),
    [
        (5, "all", (2, 5, 3, 33, 27)),
        (1, "all", (3, 1, 3, 17, 20)),
        (1, "all", (1, 4, 3, 16, 16)),  # four windows of one frame
        (2, "all", (2, 6, 3, 21, 19)),
        (5, "centre", (2, 5, 3, 33, 27)),
        (4, "centre", (1, 4, 3, 16, 18)),
        (1, "centre", (2, 1, 3, 15, 15)),
    ],
)
def test_output_shapes(clip_length, frames, shape):
    model = create_model("ccnet3d_tiny", num_classes=4, clip_length=clip_length, frames=frames)
    B, T, _, H, W = shape
    expected = (B, T, 4, H, W) if frames == "all" else (B, 4, H, W)
    x = _clip(*shape)
    train = model.train()(x)
    assert isinstance(train, SegmentationOutput)
    assert tuple(train.out.shape) == expected and tuple(train.aux.shape) == expected
    with torch.no_grad():
        evaluated = model.eval()(x)
    assert tuple(evaluated.out.shape) == expected and evaluated.aux is None


def test_decode_gives_feature_resolution_and_the_context_sees_clips():
    model = randomise(create_model("ccnet3d_tiny", num_classes=4, clip_length=3)).eval()
    seen = []
    model.head.context.register_forward_hook(lambda module, inputs, output: seen.append((inputs[0], output)))
    x = _clip(2, 6, 3, 32, 28)
    with torch.no_grad():
        out, aux = model.decode(x)
        assert tuple(out.shape) == (2, 6, 4, 8, 7) and aux is None
        context_in, context_out = seen[0]
        assert tuple(context_in.shape) == tuple(context_out.shape) == (4, 32, 3, 8, 7)  # (B T/L, C, L, h, w)
        for b in range(2):
            for t in range(6):  # window t // 3 of clip b, its frame t % 3: per-frame conv_in features
                features = model.head.conv_in(model.backbone(x[b, t : t + 1])[1])[0]
                torch.testing.assert_close(context_in[b * 2 + t // 3, :, t % 3], features)


# --- the 2-D twin and the attention windows -----------------------------------------------------------
@pytest.mark.parametrize("frames", ["all", "centre"])
def test_one_frame_windows_reproduce_the_2d_model(frames):
    image_model, video_model = _pair(clip_length=1, frames=frames)
    x = _clip(2, 1, 3, 35, 29)
    with torch.no_grad():
        expected = image_model(x[:, 0]).out  # (B, K, H, W)
        out = video_model(x).out
        assert (out[:, 0] if frames == "all" else out).sub(expected).abs().max() <= 1e-5
        # the attention path is live: without it the logits differ
        image_model.head.context.cca.gamma.zero_()
        assert image_model(x[:, 0]).out.sub(expected).abs().max() > 1e-3  # >> the 1e-5 tolerance


def test_one_frame_windows_segment_a_clip_frame_by_frame():
    image_model, video_model = _pair(clip_length=1)
    x = _clip(2, 4, 3, 24, 20)
    with torch.no_grad():
        out = video_model(x).out
        for t in range(4):
            assert out[:, t].sub(image_model(x[:, t]).out).abs().max() <= 1e-5


def test_resnet50_one_frame_reproduces_the_2d_model():
    image_model, video_model = _pair("r50_d8", num_classes=3, clip_length=1)
    x = _clip(1, 1, 3, 33, 33)
    with torch.no_grad():
        assert video_model(x).out[:, 0].sub(image_model(x[:, 0]).out).abs().max() <= 1e-5


def test_long_clips_are_independent_windows():
    _, video_model = _pair(clip_length=2)
    x = _clip(2, 6, 3, 20, 24)
    with torch.no_grad():
        out = video_model(x).out
        windows = torch.cat([video_model(x[:, i : i + 2]).out for i in (0, 2, 4)], dim=1)
    assert out.sub(windows).abs().max() <= 1e-5


@pytest.mark.parametrize(
    ("clip_length", "gamma", "reaches"), [(1, 0.7, False), (5, 0.7, True), (5, 0.0, False)]
)
def test_temporal_reach(clip_length, gamma, reaches):
    """Frame 2's logits depend on the other frames only through the attention of a window spanning them."""
    model = randomise(create_model("ccnet3d_tiny", num_classes=3, clip_length=clip_length), gamma=gamma)
    x = _clip(1, 5, 3, 20, 20).requires_grad_()
    model.eval()(x).out[:, 2].sum().backward()
    others = x.grad[:, [0, 1, 3, 4]].abs()
    assert x.grad[:, 2].abs().max() > 0
    assert (others.max() > 1e-6) if reaches else torch.equal(others, torch.zeros_like(others))


@pytest.mark.parametrize("clip_length", [5, 4])
def test_centre_mode_is_the_centre_frame_of_all_mode(clip_length):
    model = randomise(create_model("ccnet3d_tiny", num_classes=3, clip_length=clip_length, dropout=0.0))
    x = _clip(2, clip_length, 3, 25, 23)
    c = centre_index(clip_length)
    # train mode (aux logits) with frozen BN statistics: deterministic and batch-independent
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    with torch.no_grad():
        every = model(x)
        model.frames = "centre"
        centre = model(x)
    assert centre.out.shape == (2, 3, 25, 23)
    assert centre.out.sub(every.out[:, c]).abs().max() <= 1e-5
    assert centre.aux.sub(every.aux[:, c]).abs().max() <= 1e-5


def test_centre_index():
    assert [centre_index(t) for t in (1, 2, 3, 4, 5, 8)] == [0, 1, 1, 2, 2, 4]
    with pytest.raises(ValueError, match="at least one frame"):
        centre_index(0)


# --- errors -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("frames", "shape", "message"),
    [
        ("all", (1, 3, 16, 16), r"\(B, T, 3, H, W\), got shape \(1, 3, 16, 16\)"),
        ("all", (1, 5, 1, 16, 16), r"\(B, T, 3, H, W\), got shape \(1, 5, 1, 16, 16\)"),
        ("all", (1, 7, 3, 16, 16), r"multiple of clip_length=5, got shape \(1, 7, 3, 16, 16\)"),
        ("all", (1, 0, 3, 16, 16), r"multiple of clip_length=5, got shape \(1, 0, 3, 16, 16\)"),
        ("centre", (1, 10, 3, 16, 16), r"exactly clip_length=5 frames, got shape \(1, 10, 3, 16, 16\)"),
        ("centre", (1, 3, 3, 16, 16), r"exactly clip_length=5 frames, got shape \(1, 3, 3, 16, 16\)"),
    ],
)
def test_bad_inputs_name_their_shape(frames, shape, message):
    model = create_model("ccnet3d_tiny", num_classes=2, frames=frames).eval()
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(shape))


def test_bad_arguments():
    with pytest.raises(ValueError, match="clip_length must be >= 1, got 0"):
        create_model("ccnet3d_tiny", num_classes=2, clip_length=0)
    with pytest.raises(ValueError, match=r"frames must be one of \['all', 'centre'\], got 'center'"):
        create_model("ccnet3d_tiny", num_classes=2, frames="center")


# --- weights ------------------------------------------------------------------------------------------
def test_inflation_reshapes_only_the_context_convs():
    image_model, video_model = _pair()
    state = image_model.state_dict()
    inflated = inflate_2d_state_dict(state, video_model)
    assert list(inflated) == list(state)
    for key, value in state.items():
        if key in CONTEXT_CONVS:
            assert inflated[key].shape == (*value.shape, 1) and torch.equal(inflated[key][..., 0], value)
        else:
            assert inflated[key] is value
    # the video model's own weights pass unchanged
    own = video_model.state_dict()
    assert all(inflate_2d_state_dict(own, video_model)[k] is v for k, v in own.items())


def test_pretrained_from_a_2d_zoo_entry(tmp_path, monkeypatch, mmseg_r50_checkpoint):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(
        torch.hub, "download_url_to_file", lambda url, dst, *a, **k: torch.save(mmseg_r50_checkpoint, dst)
    )
    video_model = create_model("ccnet3d_r50_d8", pretrained=ZOO_NAME, clip_length=1).eval()
    image_model = create_model("ccnet_r50_d8", pretrained=ZOO_NAME).eval()
    assert video_model.pretrained_cfg.name == ZOO_NAME and video_model.num_classes == 19
    # the entry's model_kwargs and preprocessing carry over
    assert video_model.align_corners and video_model.preprocess is video_model.pretrained_cfg.preprocess
    state = mmseg_r50_checkpoint["state_dict"]
    query = video_model.head.context.cca.query_conv.weight
    assert torch.equal(query, state["decode_head.cca.query_conv.weight"][..., None])
    assert video_model.head.context.cca.gamma.item() == pytest.approx(0.7)
    x = _clip(1, 1, 3, 33, 33)
    with torch.no_grad():
        assert video_model(x).out[:, 0].sub(image_model(x[:, 0]).out).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="for architecture 'ccnet_r50_d8', not 'ccnet3d_r101_d8'"):
        create_model("ccnet3d_r101_d8", pretrained=ZOO_NAME)
    # fine-tuning to CamVid's 11 classes: everything but the classifiers comes from the 19-class entry
    camvid = create_model("ccnet3d_r50_d8", num_classes=11, pretrained=ZOO_NAME, new_classifier=True)
    assert camvid.num_classes == 11 and camvid.aux_head.classifier.out_channels == 11
    assert torch.equal(camvid.head.context.cca.query_conv.weight, query)
    assert torch.equal(camvid.backbone.bn1.running_mean, state["backbone.stem.7.running_mean"])
    assert camvid.pretrained_cfg is None and camvid.preprocess is video_model.preprocess


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_pretrained_from_files(tmp_path, suffix):
    image_model = randomise(create_model("ccnet_tiny", num_classes=4)).eval()
    path_2d = save_weights(tmp_path / f"image{suffix}", image_model.state_dict(), {"arch": "ccnet_tiny"})
    video_model = create_model("ccnet3d_tiny", pretrained=path_2d, clip_length=1).eval()
    assert video_model.num_classes == 4
    x = _clip(2, 3, 3, 21, 26)
    with torch.no_grad():
        out = video_model(x).out
        for t in range(3):
            assert out[:, t].sub(image_model(x[:, t]).out).abs().max() <= 1e-5

    # the video model's own files load back into it
    path_3d = save_weights(tmp_path / f"video{suffix}", video_model.state_dict(), {"arch": "ccnet3d_tiny"})
    again = create_model("ccnet3d_tiny", pretrained=path_3d, clip_length=3).eval()
    video_model.clip_length = 3
    with torch.no_grad():
        assert torch.equal(again(x).out, video_model(x).out)


def test_pretrained_checks(tmp_path):
    image_model = create_model("ccnet_tiny", num_classes=4)
    other = save_weights(tmp_path / "fcn.safetensors", image_model.state_dict(), {"arch": "fcn_tiny"})
    with pytest.raises(ValueError, match="for architecture 'fcn_tiny', not 'ccnet3d_tiny'"):
        create_model("ccnet3d_tiny", pretrained=other)
    wider = create_model("ccnet_tiny", num_classes=4, channels=48).state_dict()
    path = save_weights(tmp_path / "wide.safetensors", wider, {"arch": "ccnet_tiny"})
    with pytest.raises(CheckpointMismatchError, match=r"head\.context\.cca\.query_conv\.weight"):
        create_model("ccnet3d_tiny", pretrained=path)
    assert create_model("ccnet3d_tiny", pretrained=path, channels=48).num_classes == 4
