"""The app's handlers and page events without a browser: bad files, legend, downloads, the attention
explorer's click -> cell -> pictures, videos, weights loading. Oracles: a brightness-threshold model whose
labels are known by construction, hand-computed shares and cells."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ccnet.app.handlers import (
    AppError,
    attention_views,
    legend_rows,
    load_image,
    save_downloads,
    segment,
    segment_video,
    shown_image,
)
from ccnet.app.models import AppModel, WeightsError, load_app_model, resolve_weights
from ccnet.app.page import AppSession
from ccnet.engine.video_io import VideoWriter, read_video
from ccnet.models import create_model
from ccnet.models.weights import save_weights
from ccnet.preprocess import Preprocess

PALETTE = [(0, 0, 0), (255, 0, 0)]


class Threshold(nn.Module):
    """Class 1 where the pixel is bright (mean of RGB / 255 above 0.5)."""

    preprocess = Preprocess(mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0))
    num_classes = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = x.mean(1, keepdim=True) - 0.5
        return torch.cat([-bright, bright], 1) * 20


def threshold_model() -> AppModel:
    return AppModel(Threshold(), "threshold", ["background", "thing"], PALETTE, "a threshold")


def picture(height: int = 40, width: int = 50) -> np.ndarray:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[5:15, 10:30] = 255  # 10 x 20 = 200 bright pixels of 2000
    return image


def test_bad_image_files_give_a_message(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(AppError, match=r"empty.png: empty file \(0 bytes\)"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(AppError, match=r"text\.png: not a readable image"):
        load_image(tmp_path / "text.png")
    with pytest.raises(AppError, match="no image"):
        load_image(None)
    Image.fromarray(np.zeros((60, 2100, 3), dtype=np.uint8)).save(tmp_path / "wide.png")
    image, note = load_image(tmp_path / "wide.png", max_side=1050)
    assert image.shape == (30, 1050, 3) and note == "resized from 2100x60 to 1050x30 (--max-side 1050)"


def test_legend_and_downloads(tmp_path):
    result = segment(threshold_model(), picture())
    assert legend_rows(result, ["background", "thing"], PALETTE) == [
        ("background", "#000000", 90.0),
        ("thing", "#ff0000", 10.0),
    ]
    labels_png, overlay_png = save_downloads(result, PALETTE, 0.25, tmp_path, "x")
    saved = Image.open(labels_png)
    assert saved.mode == "P" and saved.getpalette()[:6] == [0, 0, 0, 255, 0, 0]
    expected = np.zeros((40, 50), dtype=np.uint8)
    expected[5:15, 10:30] = 1
    np.testing.assert_array_equal(np.array(saved), expected)
    blended = np.array(Image.open(overlay_png))
    assert tuple(blended[8, 12]) == (255, 191, 191)  # 0.75 * 255 + 0.25 * (255, 0, 0), rounded
    assert tuple(blended[30, 40]) == (0, 0, 0)


def test_options_are_checked():
    with pytest.raises(AppError, match="scales 'big'"):
        segment(threshold_model(), picture(), scales="big")
    result = segment(threshold_model(), picture(), mode="slide", crop_size=16, flip=True, scales="1 0.5")
    assert result.labels.shape == (40, 50) and result.labels[10, 20] == 1 and result.labels[30, 40] == 0


@pytest.fixture(scope="module")
def tiny() -> AppModel:
    torch.manual_seed(0)
    model = create_model("ccnet_tiny", num_classes=4).eval()
    with torch.no_grad():
        cca = model.head.context.cca
        cca.gamma.fill_(1.0)  # loop 2 then sees other features than loop 1
        cca.query_conv.weight.mul_(5)  # sharper weights than a fresh model's (near uniform), as trained
        cca.key_conv.weight.mul_(5)
    return AppModel(model, "ccnet_tiny", [f"c{i}" for i in range(4)], PALETTE * 2, "tiny")


def test_click_picks_the_cell_under_the_pixel_and_draws_its_maps(tiny):
    image = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    result = segment(tiny, image)
    shown = shown_image(result)
    assert shown.shape == (128, 192, 3)  # enlarged x2 (long side >= 256 would be x3: 96 * 2 = 192 < 256)
    views = attention_views(tiny, result, x=100, y=20)
    assert views.grid == (16, 24)  # output stride 4 of 64 x 96
    assert views.cell == (20 * 16 // 128, 100 * 24 // 192) == (2, 12)
    # loop 1: the cross only; the other pixels stay the grey image
    for view in (views.loop1, views.loop2):
        assert view.shape == shown.shape
        grey_far = view[100:120, 10:30]  # cells (12..14, 1..3): off row 2 and column 12
        assert np.all(grey_far.max(-1) == grey_far.min(-1))
        on_row = view[17:23, 10:30]  # cell row 2 covers shown rows 16..23
        assert np.any(on_row.max(-1) != on_row.min(-1))
    # combined: two hops reach every cell, nothing stays grey (but the white cell outline)
    assert (
        np.all(views.combined.max(-1) != views.combined.min(-1))
        or np.mean(views.combined.max(-1) == views.combined.min(-1)) < 0.01
    )
    assert tuple(views.loop1[16, 100]) == (255, 255, 255)  # the outline of the clicked cell
    assert not np.array_equal(views.loop1, views.loop2)  # loop 2 attends over loop 1's outputs
    other = attention_views(tiny, result, x=10, y=120)
    assert other.cell == (15, 1) and not np.array_equal(other.combined, views.combined)


def test_models_without_attention_and_video_errors(tmp_path):
    with pytest.raises(AppError, match="threshold has no 2-D criss-cross attention"):
        attention_views(threshold_model(), segment(threshold_model(), picture()), 1, 1)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(AppError, match=r"empty\.mp4: empty file"):
        segment_video(threshold_model(), tmp_path / "empty.mp4", tmp_path)
    (tmp_path / "text.webm").write_text("no video")
    with pytest.raises(AppError, match=r"text\.webm: not a readable video"):
        segment_video(threshold_model(), tmp_path / "text.webm", tmp_path)
    with VideoWriter(tmp_path / "clip.mp4", 12) as writer:
        for _ in range(4):
            writer.write(picture(48, 64))
    video, frames, _ = segment_video(
        threshold_model(), tmp_path / "clip.mp4", tmp_path / "out", progress=False
    )
    assert frames == 4 and len(list(read_video(video))) == 4


def test_weights_loading_and_page_events(tmp_path, tiny):
    with pytest.raises(WeightsError, match=r"holds no model\.safetensors and no iter_"):
        resolve_weights(str(tmp_path))
    run = tmp_path / "run"
    save_weights(
        run / "model.safetensors", tiny.model.state_dict(), {"arch": "ccnet_tiny", "num_classes": "4"}
    )
    assert resolve_weights(str(run)) == str(run / "model.safetensors")
    loaded = load_app_model(str(run))
    assert (
        loaded.trained
        and loaded.name == "ccnet_tiny"
        and float(loaded.model.head.context.cca.gamma.detach()) == 1.0
    )
    with pytest.raises(WeightsError, match="do not fit model 'fcn_tiny'"):
        load_app_model(str(run), "fcn_tiny")

    session = AppSession(threshold_model(), out_dir=str(tmp_path / "served"))
    (tmp_path / "text.png").write_text("not an image")
    options = ("whole", False, "1.0", 512, "torch", 0.5)
    status, *_, state = session.segment_file(str(tmp_path / "text.png"), *options)
    assert status.startswith("**Error:** text.png: not a readable image") and state is None
    message = session.load_weights(str(tmp_path / "missing.pt"), "")
    assert "**Error:**" in message and "missing.pt" in message and "Still using:** a threshold" in message
    Image.fromarray(picture()).save(tmp_path / "good.png")
    status, overlay, _, legend, label_file, _, _, state = session.segment_file(
        str(tmp_path / "good.png"), *options
    )
    assert status.startswith("Segmented 50x40 in") and "thing" in legend and "10.0%" in legend
    assert overlay.shape == (200, 250, 3)  # enlarged x5 for display (long side >= 256 // 50)
    assert np.array_equal(np.array(Image.open(label_file)), segment(threshold_model(), picture()).labels)
    assert session.click(state, 3, 3)[3].startswith("**Error:** threshold has no 2-D criss-cross")
    assert (
        session.segment_current(None, None, *options)[0]
        == "**Error:** no image: upload an image file or pick a sample"
    )
    status, *_ = session.segment_current(
        None, "context sample 1", *("slide", True, "1 0.5", 32, "torch", 0.3)
    )
    assert status.startswith("Segmented 64x64 in") and status.endswith(
        "(threshold, torch, slide, flip, scales 1 0.5)"
    )
    assert session.load_weights(str(run), "").startswith("**Model:** ccnet_tiny with weights")


def test_app_command_refuses_bad_arguments_before_serving(tmp_path, capsys):
    import ccnet.cli

    assert ccnet.cli.main(["app", "--port", "70000"]) == 2
    assert "ccnet app: error: --port 70000: expected 1..65535" in capsys.readouterr().err
    assert ccnet.cli.main(["app", "--weights", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ccnet app: error:") and "missing.pt" in err and "not found" in err
