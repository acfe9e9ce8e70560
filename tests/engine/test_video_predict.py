"""``ccnet predict`` on video files: decoded frame by frame, an overlay MP4 at the input's frame rate, a
video model's clip window; oracles: labels of a brightness threshold (known where the object is) blended
with the overlay formula by hand."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import ccnet.cli
from ccnet.engine.checkpoint import checkpoint_meta
from ccnet.engine.inference import Segmenter
from ccnet.engine.predict import predict_video
from ccnet.engine.video_io import VideoWriter, probe_video, read_video
from ccnet.models import create_model
from ccnet.models.weights import save_weights
from ccnet.preprocess import Preprocess

FPS = Fraction(30000, 1001)  # NTSC: a rate that is not an integer must be kept exactly
HEIGHT, WIDTH, FRAMES, SIDE, STEP = 48, 64, 10, 12, 5
PALETTE = [(0, 0, 255), (255, 0, 0)]  # background blue, object red
ALPHA = 0.5


def object_left(t: int) -> int:
    return 2 + STEP * t


def make_clip(path) -> None:
    """A white square moving right on black, STEP px per frame."""
    with VideoWriter(path, FPS, quality=10) as writer:
        for t in range(FRAMES):
            frame = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
            frame[18 : 18 + SIDE, object_left(t) : object_left(t) + SIDE] = 255
            writer.write(frame)


class Threshold(nn.Module):
    """Class 1 where the (0..1-normalised) pixel is bright; a video model takes the brightest frame of its
    clip (class 1 wherever the object is in any frame of the window)."""

    preprocess = Preprocess(mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0))

    def __init__(self, clip_length: int | None = None) -> None:
        super().__init__()
        self.clip_length = clip_length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.clip_length is not None:  # (B, T, 3, H, W) -> the centre frame's logits
            x = x.amax(1)
        bright = x.mean(1, keepdim=True) - 0.5  # (B, 1, H, W)
        return torch.cat([-bright, bright], 1) * 20


def square(t: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    t = min(max(t, 0), FRAMES - 1)  # the clip's ends repeat the first and last frames
    mask[18 : 18 + SIDE, object_left(t) : object_left(t) + SIDE] = True
    return mask


def interior(mask: np.ndarray) -> np.ndarray:
    """``mask`` shrunk by 2 px (H.264 blurs the edges of colour blocks)."""
    inner = mask.copy()
    for shift in (-2, 2):
        inner &= np.roll(mask, shift, 0) & np.roll(mask, shift, 1)
    return inner


@pytest.mark.parametrize("clip_length", [None, 3])
def test_overlay_video_follows_the_moving_object(tmp_path, clip_length):
    source = tmp_path / "clip.mp4"
    make_clip(source)
    segmenter = Segmenter(Threshold(clip_length))
    video, count = predict_video(
        segmenter, source, tmp_path / "out", PALETTE, alpha=ALPHA, label_frames=True, progress=False
    )
    assert video == tmp_path / "out" / "clip_overlay.mp4" and count == FRAMES
    info = probe_video(video)
    assert (info.fps, info.height, info.width) == (FPS, HEIGHT, WIDTH)
    decoded = list(read_video(video))
    assert len(decoded) == FRAMES
    labels = sorted((tmp_path / "out" / "clip_labels").glob("*.png"))
    assert [p.name for p in labels] == [f"{t:06d}.png" for t in range(FRAMES)]
    for t, frame in enumerate(decoded):
        # 2-D: the object of frame t; a 3-frame window: of frames t-1, t, t+1
        labelled = square(t) if clip_length is None else square(t - 1) | square(t) | square(t + 1)
        image = np.where(square(t)[..., None], 255.0, 0.0)
        expected = (1 - ALPHA) * image + ALPHA * np.asarray(PALETTE, dtype=float)[labelled.astype(int)]
        for region in (interior(square(t)), interior(labelled & ~square(t)), interior(~labelled)):
            if region.any():
                error = np.abs(frame[region].astype(float) - expected[region]).mean()
                assert error < 8, (t, error)
        saved = np.array(Image.open(labels[t]))
        np.testing.assert_array_equal(saved, labelled.astype(np.uint8))
    # the overlay moves with the object: frame 0 and the last frame differ where the square was
    assert np.abs(decoded[0][square(0)].astype(int) - decoded[-1][square(0)]).mean() > 40


def test_cli_predicts_videos_and_images_and_skips_bad_videos(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        ccnet.cli, "COMMANDS", {**ccnet.cli.COMMANDS, "predict": ("ccnet.cli.predict", "segment")}
    )
    torch.manual_seed(0)
    model = create_model("ccnet_tiny", num_classes=2)
    weights = save_weights(
        tmp_path / "tiny.safetensors",
        model.state_dict(),
        checkpoint_meta(model, model_overrides={}, classes=("bg", "thing"), palette=PALETTE),
    )
    make_clip(tmp_path / "clip.mp4")
    (tmp_path / "empty.webm").write_bytes(b"")
    (tmp_path / "text.mkv").write_text("not a video")
    out = tmp_path / "out"
    args = ["predict", "--weights", str(weights), "--out", str(out), "--no-progress", "--video-labels"]
    inputs = [str(tmp_path / name) for name in ("clip.mp4", "empty.webm", "text.mkv")]
    assert ccnet.cli.main([*args, *inputs]) == 1
    captured = capsys.readouterr()
    assert "wrote 0 label maps to" in captured.out and "1 videos (10 frames); 2 inputs failed" in captured.out
    empty = tmp_path / "empty.webm"
    assert f"skipped {empty}: {empty}: empty file (0 bytes)" in captured.err
    assert f"skipped {tmp_path / 'text.mkv'}: {tmp_path / 'text.mkv'}: not a readable video" in captured.err
    assert len(list(read_video(out / "clip_overlay.mp4"))) == FRAMES
    assert len(list((out / "clip_labels").glob("*.png"))) == FRAMES
    assert ccnet.cli.main([*args, inputs[0]]) == 0
