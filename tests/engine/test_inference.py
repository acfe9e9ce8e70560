"""Segmenter: preprocessing, whole / sliding-window / multi-scale + flip, batching, input checks.

Oracles are models whose logits are known functions of the input (a 1x1 convolution, a column ramp, a
size-dependent constant, a call counter), so every expected value is computed directly in the test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ccnet.engine.inference import Prediction, Segmenter, predict
from ccnet.models import create_model, get_weights

MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _normalised(image: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


@pytest.fixture
def pointwise() -> nn.Conv2d:
    """Logits are a per-pixel linear map of the input: any tiling must give the whole-image result."""
    torch.manual_seed(0)
    return nn.Conv2d(3, 4, 1)


class ColumnRamp(nn.Module):
    """Logits (B, 2, h, w): channel 0 = 0.3 * column index in the model's own input frame, channel 1 = 0."""

    def forward(self, x):
        B, _, h, w = x.shape
        ramp = 0.3 * torch.arange(w, dtype=x.dtype).expand(B, 1, h, w)
        return torch.cat([ramp, torch.zeros_like(ramp)], dim=1)


class SizeConstant(nn.Module):
    """Logits (B, 2, h, w): channel 0 = h / 10 everywhere, channel 1 = 0; records the input shapes."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        B, _, h, w = x.shape
        return torch.cat([torch.full((B, 1, h, w), h / 10), torch.zeros(B, 1, h, w)], dim=1)


class CallCounter(nn.Module):
    """Logits (B, 2, h, w): channel 0 = the number of earlier calls (one call per tile with batch_size=1)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        B, _, h, w = x.shape
        value = float(self.calls)
        self.calls += 1
        return torch.cat([torch.full((B, 1, h, w), value), torch.zeros(B, 1, h, w)], dim=1)


def test_whole_image_is_softmax_of_the_model(pointwise):
    image = _image(21, 30)
    prediction = Segmenter(pointwise).predict(image, return_probs=True)
    expected = F.conv2d(_normalised(image), pointwise.weight, pointwise.bias).softmax(1)[0]
    assert isinstance(prediction, Prediction)
    assert prediction.labels.dtype == torch.int64 and prediction.labels.shape == (21, 30)
    assert torch.allclose(prediction.probs, expected, atol=1e-6)
    assert torch.equal(prediction.labels, expected.argmax(0))


@pytest.mark.parametrize("size", [(37, 53), (10, 12), (16, 40)])  # larger than, smaller than, mixed vs crop
def test_sliding_window_equals_whole_image_for_a_pointwise_model(pointwise, size):
    image = _image(*size)
    whole = Segmenter(pointwise, mode="whole").predict(image, return_probs=True)
    slide = Segmenter(pointwise, mode="slide", crop_size=16, stride=(10, 7)).predict(image, return_probs=True)
    assert slide.probs.shape == (4, *size)
    assert torch.allclose(slide.probs, whole.probs, atol=1e-6)


def test_sliding_window_averages_overlapping_tiles():
    # Image 10x7, crop 4x4, stride 3x3: mmseg's grid is 3 rows x 2 columns, the last row / column ending at
    # the border. Windows (y1, y2, x1, x2) in call order, written out by hand:
    windows = [(0, 4, 0, 4), (0, 4, 3, 7), (3, 7, 0, 4), (3, 7, 3, 7), (6, 10, 0, 4), (6, 10, 3, 7)]
    total, count = torch.zeros(10, 7), torch.zeros(10, 7)
    for call, (y1, y2, x1, x2) in enumerate(windows):
        total[y1:y2, x1:x2] += call
        count[y1:y2, x1:x2] += 1
    expected = total / count

    model = CallCounter()
    segmenter = Segmenter(model, mode="slide", crop_size=4, stride=3, batch_size=1)
    probs = segmenter.predict(_image(10, 7), return_probs=True).probs
    assert model.calls == 6
    assert torch.allclose(probs[0].log() - probs[1].log(), expected, atol=1e-4)


def test_flip_averages_probabilities_of_the_flipped_back_pass():
    image = _image(5, 9)
    ramp = 0.3 * torch.arange(9.0).expand(5, 9)
    expected = (torch.sigmoid(ramp) + torch.sigmoid(ramp.flip(-1))) / 2  # p(class 0) per pass, averaged
    probs = Segmenter(ColumnRamp(), flip=True).predict(image, return_probs=True).probs
    assert torch.allclose(probs[0], expected, atol=1e-6)
    assert torch.allclose(probs.sum(0), torch.ones(5, 9), atol=1e-6)


def test_multi_scale_averages_probabilities_over_scales():
    model = SizeConstant()
    probs = Segmenter(model, scales=(0.5, 1.0, 1.5)).predict(_image(20, 30), return_probs=True).probs
    assert [s[-2:] for s in model.shapes] == [(10, 15), (20, 30), (30, 45)]
    expected = sum(torch.sigmoid(torch.tensor(h / 10)) for h in (10, 20, 30)) / 3
    assert torch.allclose(probs[0], expected.expand(20, 30), atol=1e-6)


def test_keep_ratio_test_resize_and_output_at_original_size():
    model = SizeConstant()
    # factor = min(64 / 100, 32 / 40) = 0.64 -> (int(40 * 0.64 + 0.5), int(100 * 0.64 + 0.5)) = (26, 64)
    labels = Segmenter(model, test_scale=(64, 32)).predict(_image(40, 100))
    assert model.shapes == [(1, 3, 26, 64)]
    assert labels.shape == (40, 100)


def test_bgr_and_custom_normalisation():
    identity = nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        identity.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
    image = _image(6, 8)
    mean, std = (10.0, 20.0, 30.0), (2.0, 4.0, 8.0)
    probs = Segmenter(identity, mean=mean, std=std, bgr=True).predict(image, return_probs=True).probs
    bgr = torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1).float()
    expected = ((bgr - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)).softmax(0)
    assert torch.allclose(probs, expected, atol=1e-6)


def test_input_types_agree_and_lists_keep_order(pointwise, tmp_path):
    image = _image(12, 17)
    path = tmp_path / "image.png"
    Image.fromarray(image).save(path)
    chw = torch.from_numpy(image).permute(2, 0, 1)
    inputs = [image, Image.fromarray(image), chw, chw.permute(1, 2, 0), str(path), path]
    expected = Segmenter(pointwise).predict(image)
    for labels in Segmenter(pointwise).predict(inputs):
        assert torch.equal(labels, expected)

    recorder = SizeConstant()
    results = predict(recorder, [_image(8, 8), _image(12, 10), _image(8, 8, seed=1)], batch_size=4)
    assert [tuple(r.shape) for r in results] == [(8, 8), (12, 10), (8, 8)]
    assert sorted(s[0] for s in recorder.shapes) == [1, 2]  # the two 8x8 images went through as one batch


def test_bad_images_are_rejected_clearly(pointwise):
    segmenter = Segmenter(pointwise)
    with pytest.raises(TypeError, match="uint8"):
        segmenter.predict(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        segmenter.predict(np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        segmenter.predict(np.zeros((8, 8, 4), dtype=np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        segmenter.predict(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        segmenter.predict(torch.zeros(8, 8, dtype=torch.uint8))
    with pytest.raises(TypeError, match="numpy array, PIL image, tensor or file path"):
        segmenter.predict(42)
    with pytest.raises(ValueError, match="crop_size"):
        Segmenter(pointwise, mode="slide")
    with pytest.raises(ValueError, match="mode"):
        Segmenter(pointwise, mode="tiles")


def test_model_mode_is_restored_and_eval_is_used():
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(self.training)
            return torch.zeros(x.shape[0], 2, *x.shape[-2:])

    model = Probe().train()
    Segmenter(model).predict(_image(4, 4))
    assert seen == [False] and model.training


def test_defaults_come_from_the_zoo_entry():
    with torch.device("meta"):
        model = create_model("ccnet_r50_d8", num_classes=19, align_corners=True)
    model.pretrained_cfg = get_weights("mmseg:ccnet_r50-d8_769x769_80k_cityscapes")
    segmenter = Segmenter(model)
    assert segmenter.mode == "slide" and segmenter.crop_size == (769, 769) and segmenter.stride == (513, 513)
    assert segmenter.test_scale == (2048, 1024) and segmenter.align_corners
    assert Segmenter(model, mode="whole", test_scale=None).test_scale is None
    authors = create_model("ccnet_r101_d8_authors", num_classes=19, backbone="test_resnet", channels=16)
    assert Segmenter(authors).bgr and Segmenter(authors).std == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
        ),
    ],
)
def test_real_model_whole_and_slide(device):
    model = create_model("ccnet_r50_d8", num_classes=3, backbone="test_resnet", channels=16, aux_channels=8)
    model.to(device).train()
    images = [_image(37, 45), _image(20, 24, seed=2)]
    whole = Segmenter(model).predict(images, return_probs=True)
    slide = Segmenter(model, mode="slide", crop_size=32, stride=21, flip=True).predict(images)
    assert [p.labels.shape for p in whole] == [(37, 45), (20, 24)]
    assert whole[0].probs.shape == (3, 37, 45) and whole[0].probs.device.type == "cpu"
    assert [s.shape for s in slide] == [(37, 45), (20, 24)]
    assert model.training


class HalfResolution(nn.Module):
    """Logits (B, 3, ceil(h / 2), ceil(w / 2)): a 1x1 convolution of every other pixel, like a strided model;
    ``align_corners`` is the attribute the Segmenter reads (as on CCNet)."""

    def __init__(self, align_corners: bool):
        super().__init__()
        self.align_corners = align_corners
        self.conv = nn.Conv2d(3, 3, 1)
        with torch.no_grad():  # large weights: the two resize conventions then differ by a lot
            self.conv.weight.copy_(3 * torch.randn(3, 3, 1, 1, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        return self.conv(x[..., ::2, ::2])


def _by_hand(model: HalfResolution, image: np.ndarray, scales, align_corners: bool) -> torch.Tensor:
    """mmseg's aug_test written out with F.interpolate: the image is resized without align_corners, the
    logits back to the (scaled, then original) size with the model's own setting."""
    x = _normalised(image)
    H, W = x.shape[-2:]
    total = 0
    for scale in scales:
        size = (int(H * scale + 0.5), int(W * scale + 0.5))
        scaled = x if size == (H, W) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        with torch.no_grad():
            logits = model(scaled)
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=align_corners)
        if size != (H, W):
            logits = F.interpolate(logits, size=(H, W), mode="bilinear", align_corners=align_corners)
        total = total + logits.softmax(1)
    return (total / len(scales))[0]


@pytest.mark.parametrize("align_corners", [True, False])
def test_multi_scale_resizes_logits_back_with_the_models_align_corners(align_corners):
    image, scales = _image(18, 26), (0.5, 1.0, 1.5)
    model = HalfResolution(align_corners)
    probs = Segmenter(model, scales=scales).predict(image, return_probs=True).probs
    assert torch.allclose(probs, _by_hand(model, image, scales, align_corners), atol=1e-5)
    other = _by_hand(model, image, scales, not align_corners)
    assert (probs - other).abs().max() > 0.05  # the test has teeth: the other convention is far off
