"""Video models through the engine: the Segmenter on clips, losses over frames, evaluation over labelled
frames, prediction on a frame sequence, and training / evaluation with the ``video`` config.

Oracles: models whose logits are known functions of the input (computed directly in the test), clips whose
frames carry their own index as pixel value, and hand-counted confusion matrices.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import ccnet.cli
from ccnet.config import load_config
from ccnet.engine.evaluate import evaluate
from ccnet.engine.inference import Segmenter
from ccnet.engine.predict import predict_files
from ccnet.engine.train import frames_as_images, train

MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
FAST_VIDEO = [
    "data.options.length=8",
    "data.val_options.length=4",
    "data.num_workers=0",
    "train.num_threads=1",
    "train.progress=false",
    "train.val_interval=0",
    "train.log_interval=1000",
    "train.batch_size=2",
]


def _normalised(clip: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) normalised like the Segmenter does."""
    x = torch.from_numpy(clip).permute(0, 3, 1, 2).float()
    return (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


class FrameMix(nn.Module):
    """A video model with a known answer. Logits (B, T, 2, h, w): channel 0 = red of the frame + the mean of
    green over the window's frames (a temporal dependence), channel 1 = 0. ``frames="centre"``: frame
    ``T // 2`` only. Records the input shapes."""

    def __init__(self, clip_length: int, frames: str = "all") -> None:
        super().__init__()
        self.clip_length, self.frames = clip_length, frames
        self.weight = nn.Parameter(torch.ones(()))  # gives the Segmenter a device and dtype
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        windows = x.unflatten(1, (-1, self.clip_length))  # (B, n, L, 3, h, w)
        score = windows[:, :, :, 0] + windows[:, :, :, 1].mean(dim=2, keepdim=True)  # (B, n, L, h, w)
        score = score.flatten(1, 2)  # (B, T, h, w)
        logits = torch.stack([score, torch.zeros_like(score)], dim=2) * self.weight  # (B, T, 2, h, w)
        return logits[:, x.shape[1] // 2] if self.frames == "centre" else logits


def expected_probs(clip: np.ndarray, clip_length: int) -> torch.Tensor:
    x = _normalised(clip)  # (T, 3, H, W)
    windows = x.unflatten(0, (-1, clip_length))
    score = (windows[:, :, 0] + windows[:, :, 1].mean(dim=1, keepdim=True)).flatten(0, 1)  # (T, H, W)
    return torch.stack([score, torch.zeros_like(score)], dim=1).softmax(dim=1)  # (T, 2, H, W)


def _clip(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("clip_length", [1, 3])
def test_segmenter_on_clips_whole_slide_flip(clip_length):
    clip = _clip(3, 11, 14)
    expected = expected_probs(clip, clip_length)
    model = FrameMix(clip_length)
    whole = Segmenter(model, mode="whole", test_scale=None).predict(clip, return_probs=True)
    assert whole.probs.shape == (3, 2, 11, 14) and whole.labels.shape == (3, 11, 14)
    torch.testing.assert_close(whole.probs, expected, atol=1e-5, rtol=0)
    assert torch.equal(whole.labels, expected.argmax(dim=1))
    # pointwise in space: tiles (here smaller than the clip, overlapping) and flips change nothing
    slide = Segmenter(model, mode="slide", crop_size=(8, 8), stride=(5, 5), test_scale=None, flip=True)
    torch.testing.assert_close(slide.predict(clip, return_probs=True).probs, expected, atol=1e-5, rtol=0)
    assert all(shape[1:3] == (3, 3) and shape[-2:] == (8, 8) for shape in model.shapes[1:])


def test_segmenter_clip_inputs_batches_and_centre_frame():
    model = FrameMix(3)
    segmenter = Segmenter(model, mode="whole", test_scale=None, batch_size=2)
    small, large = _clip(3, 6, 7, seed=1), _clip(3, 9, 5, seed=2)
    frames = [Image.fromarray(frame) for frame in small]  # a clip given as a list of frames
    results = segmenter.predict([frames, large, small])
    assert [tuple(r.shape) for r in results] == [(3, 6, 7), (3, 9, 5), (3, 6, 7)]
    assert torch.equal(results[0], expected_probs(small, 3).argmax(1))
    assert torch.equal(results[1], expected_probs(large, 3).argmax(1))
    assert (2, 3, 3, 6, 7) in model.shapes  # same-size clips batched together

    centre = Segmenter(FrameMix(3, "centre"), mode="whole", test_scale=None).predict(small, return_probs=True)
    assert centre.labels.shape == (6, 7)
    torch.testing.assert_close(centre.probs, expected_probs(small, 3)[1], atol=1e-5, rtol=0)

    with pytest.raises(ValueError, match=r"same size.*\(6, 7\).*\(9, 5\)"):
        segmenter.predict([[small[0], large[0], small[1]]])
    with pytest.raises(ValueError, match=r"clip: expected \(T, 3, H, W\) or \(T, H, W, 3\).*\(6, 7, 3\)"):
        segmenter.predict(small[0])


def test_frames_as_images_folds_frames_or_takes_the_centre():
    out = torch.randn(2, 5, 4, 3, 3)
    aux = torch.randn(2, 5, 4, 3, 3)
    target = torch.randint(0, 4, (2, 5, 3, 3))
    flat_out, flat_aux, flat_target = frames_as_images(out, aux, target)
    assert flat_out.shape == (10, 4, 3, 3) and flat_target.shape == (10, 3, 3)
    assert torch.equal(flat_out[7], out[1, 2]) and torch.equal(flat_aux[7], aux[1, 2])
    assert torch.equal(flat_target[7], target[1, 2])
    centre_out = torch.randn(2, 4, 3, 3)
    _, none, centre_target = frames_as_images(centre_out, None, target)
    assert none is None and torch.equal(centre_target, target[:, 2])
    images = torch.randint(0, 4, (2, 3, 3))
    assert frames_as_images(centre_out, None, images)[2] is images


def test_evaluation_scores_every_frame_or_only_the_centre():
    """Prediction: class 0 where red < 128, else 1 (all frames). Hand-counted scores."""

    class RedThreshold(FrameMix):
        def forward(self, x):
            red = x[:, :, 0] * STD[0] + MEAN[0]  # (B, T, h, w)
            logits = torch.stack([128 - red, red - 128], dim=2)
            return logits[:, x.shape[1] // 2] if self.frames == "centre" else logits

    image = np.zeros((3, 2, 2, 3), dtype=np.uint8)
    image[:, :, 1, 0] = 255  # right column red -> predicted 1, left column -> 0
    mask = torch.tensor(
        [
            [[1, 1], [1, 1]],  # frame 0: all class 1 (2 right, 2 wrong)
            [[0, 1], [255, 1]],  # frame 1 (the centre): 3 labelled pixels, all right
            [[0, 0], [0, 0]],  # frame 2: all class 0 (2 right, 2 wrong)
        ]
    )
    dataset = [{"image": torch.from_numpy(image).permute(0, 3, 1, 2), "mask": mask}]
    centre = evaluate(Segmenter(RedThreshold(3, "centre"), test_scale=None), dataset, 2, progress=False)
    assert centre.pixels == 3 and list(centre.iou) == [1.0, 1.0]
    every = evaluate(Segmenter(RedThreshold(3), test_scale=None), dataset, 2, progress=False)
    # class 0: TP 1 + 0 + 2 = 3, FP 2 (frame 0 left), FN 2 (frame 2 right): IoU 3/7; class 1: TP 2+2, FP 2
    # (frame 2 right), FN 2 (frame 0 left): 4/8
    assert every.pixels == 11
    assert list(every.iou) == pytest.approx([3 / 7, 4 / 8])


def test_video_frames_are_segmented_as_centres_of_clips(tmp_path):
    """Frames carry their index as pixel value; each prediction's clip must be the frame's neighbours,
    repeated at the ends, and an unreadable frame is skipped from the sequence."""
    paths = []
    for i in range(5):
        path = tmp_path / f"frame{i}.png"
        Image.fromarray(np.full((4, 6, 3), 40 * i, dtype=np.uint8)).save(path)
        paths.append(path)
    broken = tmp_path / "frame2b.png"
    broken.write_bytes(b"not an image")
    paths.insert(3, broken)

    seen = []

    class Recorder(FrameMix):
        def forward(self, x):
            red = (x[:, :, 0, 0, 0] * STD[0] + MEAN[0]).round() / 40  # (B, T) frame indices
            seen.append(red[0].tolist())
            return super().forward(x)

    report = predict_files(
        Segmenter(Recorder(3), test_scale=None),
        paths,
        tmp_path / "out",
        [(0, 0, 0), (255, 0, 0)],
        progress=False,
    )
    assert seen == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 4]]
    assert [p.name for p, _ in report.written] == [f"frame{i}.png" for i in range(5)]
    assert report.failed and "frame2b.png" in report.failed[0][0]
    assert all(Image.open(label).size == (6, 4) for _, label in report.written)


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["model.frames=centre", "loss.ccl.enabled=true"],
        ["model.clip_length=1", "loss.ccl.enabled=true"],
    ],
    ids=["all-frames", "centre-ccl", "per-frame-ccl"],
)
def test_video_config_trains_and_evaluates(tmp_path, extra):
    config = load_config("video", [*FAST_VIDEO, f"train.work_dir={tmp_path}", "train.max_iters=3", *extra])
    result = train(config)
    assert result.model.clip_length == config.model.clip_length
    assert result.metrics is not None and 0.0 <= result.metrics.miou <= 1.0
    # every validation frame is scored (all-frame models), the centre frames only otherwise
    frames = 1 if config.model.frames == "centre" else 5
    assert result.metrics.pixels == 4 * frames * 64 * 64


def test_video_run_through_the_cli_eval_and_predict(tmp_path, monkeypatch, capsys):
    registered = dict(ccnet.cli.COMMANDS)
    for name in ("train", "eval", "predict"):
        registered.setdefault(name, (f"ccnet.cli.{name}", name))
    monkeypatch.setattr(ccnet.cli, "COMMANDS", registered)
    run = tmp_path / "run"
    assert ccnet.cli.main(["train", "video", *FAST_VIDEO, f"train.work_dir={run}", "train.max_iters=2"]) == 0
    assert ccnet.cli.main(["eval", "--weights", str(run / "model.safetensors"), "--no-progress"]) == 0
    assert "mIoU" in capsys.readouterr().out
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, image in enumerate(_clip(3, 32, 40, seed=3)):
        Image.fromarray(image).save(frames / f"{i:03d}.png")
    out = tmp_path / "out"
    argv = ["predict", "--weights", str(run / "model.safetensors"), str(frames), "--out", str(out)]
    assert ccnet.cli.main([*argv, "--no-progress"]) == 0
    assert sorted(p.name for p in out.glob("*.png") if "overlay" not in p.name) == [
        "000.png",
        "001.png",
        "002.png",
    ]


def test_fast_inference_path_serves_video_models():
    from ccnet.deploy.fast import optimize_for_inference
    from ccnet.models import create_model

    torch.manual_seed(0)
    model = create_model("ccnet3d_tiny", num_classes=4, clip_length=3).eval()
    with torch.no_grad():
        model.head.context.cca.gamma.fill_(0.8)  # 0 at init: the attention would not count
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):  # non-trivial statistics to fold
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    fast = optimize_for_inference(model)
    assert (fast.clip_length, fast.frames) == (3, "all")
    x = torch.randn(2, 3, 3, 24, 20)
    with torch.no_grad():
        torch.testing.assert_close(fast(x).out, model(x).out, atol=1e-5, rtol=0)
    clip = _clip(3, 24, 20)
    assert torch.equal(
        Segmenter(fast, test_scale=None).predict(clip), Segmenter(model, test_scale=None).predict(clip)
    )


@pytest.mark.parametrize("name", ["camvid_ccnet3d_r50-d8_t5-360x480", "camvid_ccnet3d_r50-d8_t1-360x480"])
def test_camvid_configs_train_on_clips_of_a_camvid_copy(tmp_path, name):
    """The shipped CamVid configs with the tiny network on a fake CamVid copy with extracted frames."""
    from tests.data.fakes import make_camvid_clips

    camvid, frames = make_camvid_clips(tmp_path / "data")
    config = load_config(name)
    assert config.data.dataset == "camvid_clips" and config.data.options["clip_length"] == 5
    assert config.model.name == "ccnet3d_r50_d8" and 5 % config.model.clip_length == 0
    small = [
        f"data.root={camvid}",
        f"data.options.frames_root={frames}",
        "model.name=ccnet3d_tiny",
        "model.backbone_weights=null",
        "data.crop_size=[32, 32]",
        "data.num_workers=0",
        "train.max_iters=2",
        "train.num_threads=1",
        "train.progress=false",
        f"train.work_dir={tmp_path / 'run'}",
    ]
    result = train(load_config(name, small))
    assert result.model.clip_length == config.model.clip_length
    labelled_val_pixels = result.metrics.pixels
    assert labelled_val_pixels > 0  # the centre frames of the val clips, void excluded
