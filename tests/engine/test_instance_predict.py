"""Instance overlays and detections files (ccnet.engine.instance_predict) with a fixed torchvision-style
detector. Expected pixels follow from the blending formula and the colours, not from the drawing code."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torch import nn

from ccnet.engine.instance_predict import (
    draw_instances,
    instance_colours,
    instance_labels,
    kept_detections,
    predict_instances,
)
from tests.data.coco_fakes import rectangle

# pycocotools' decoder under numpy 2 warns about its own internals (the tests decode RLE with it)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


GREY = 100
CLASSES = ("__background__", "cat", "dog")


pytestmark = pytest.mark.usefixtures("one_thread")


def _prediction(height: int = 40, width: int = 60) -> dict[str, torch.Tensor]:
    """Three detections: a cat (0.6) and a dog (0.9) above the threshold 0.5, a cat (0.3) below it."""
    masks = [rectangle(5, 5, 25, 25, height, width), rectangle(10, 35, 35, 55, height, width),
             rectangle(28, 2, 38, 12, height, width)]  # fmt: skip
    return {
        "boxes": torch.tensor([[5.0, 5.0, 25.0, 25.0], [35.0, 10.0, 55.0, 35.0], [2.0, 28.0, 12.0, 38.0]]),
        "labels": torch.tensor([1, 2, 1]),
        "scores": torch.tensor([0.6, 0.9, 0.3]),
        "masks": torch.stack([torch.from_numpy(m).float()[None] * 0.8 for m in masks]),
    }


def test_colours_are_distinct():
    colours = instance_colours(12)
    assert len(set(colours)) == 12 and all(0 <= v <= 255 for c in colours for v in c)


def test_kept_detections_and_labels():
    kept = kept_detections(_prediction(), 0.5)
    assert kept["scores"].tolist() == pytest.approx([0.9, 0.6]) and kept["labels"].tolist() == [2, 1]
    assert kept["masks"].dtype == torch.bool and kept["masks"].shape == (2, 40, 60)
    assert instance_labels(kept, CLASSES) == ["dog 0.90", "cat 0.60"]
    assert instance_labels(kept, ("bg",)) == ["label 2 0.90", "label 1 0.60"]


def test_overlay_blends_each_instance_in_its_colour():
    image = np.full((40, 60, 3), GREY, dtype=np.uint8)
    overlay = np.asarray(draw_instances(image, _prediction(), CLASSES, score_threshold=0.5, alpha=0.5))
    assert overlay.shape == (40, 60, 3) and overlay.dtype == np.uint8
    first, second = (np.asarray(c, dtype=np.float64) for c in instance_colours(2))  # dog (0.9), then cat
    # inside the masks, away from the box outline and the label at the top-left corner
    np.testing.assert_allclose(overlay[30, 50], 0.5 * GREY + 0.5 * first, atol=1)
    np.testing.assert_allclose(overlay[22, 20], 0.5 * GREY + 0.5 * second, atol=1)
    # the box outline in the instance's colour, 2 px wide: column 55 is the dog box's right edge
    np.testing.assert_array_equal(overlay[30, 55], first.astype(np.uint8))
    np.testing.assert_array_equal(overlay[30, 54], first.astype(np.uint8))
    # the detection below the threshold and the background are untouched
    np.testing.assert_array_equal(overlay[33, 7], [GREY] * 3)
    np.testing.assert_array_equal(overlay[2, 30], [GREY] * 3)
    # the label "dog 0.90": white text on the instance's colour at the box's top-left corner (inside, as
    # there is no room above)
    label = overlay[10:20, 35:55].reshape(-1, 3)
    assert (label == first).all(axis=-1).sum() > 20 and (label >= 230).all(axis=-1).sum() > 5


def test_overlay_inputs_and_threshold():
    tensor = torch.full((3, 40, 60), GREY / 255)
    pil = Image.fromarray(np.full((40, 60, 3), GREY, dtype=np.uint8))
    a = np.asarray(draw_instances(tensor, _prediction(), CLASSES))
    b = np.asarray(draw_instances(pil, _prediction(), CLASSES))
    np.testing.assert_array_equal(a, b)
    nothing = np.asarray(draw_instances(pil, _prediction(), CLASSES, score_threshold=0.95))
    np.testing.assert_array_equal(nothing, np.asarray(pil))
    with pytest.raises(ValueError, match=r"masks of size \(20, 30\) do not match the image's \(40, 60\)"):
        draw_instances(pil, _prediction(20, 30), CLASSES)


class FixedDetector(nn.Module):
    """Returns :func:`_prediction` scaled to each image it is shown."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))

    def forward(self, images):
        assert not self.training and all(i.dtype == torch.float32 and i.max() <= 1 for i in images)
        return [_prediction(*image.shape[-2:]) for image in images]


def test_predict_instances_writes_overlays_and_detections(tmp_path):
    inputs = tmp_path / "in"
    (inputs / "b").mkdir(parents=True)
    Image.fromarray(np.full((40, 60, 3), GREY, np.uint8)).save(inputs / "street.png")
    Image.fromarray(np.full((40, 60, 3), GREY, np.uint8)).save(inputs / "b" / "street.jpg")
    (inputs / "broken.png").write_bytes(b"no image")
    model = FixedDetector().train()
    files = [inputs / "street.png", inputs / "b" / "street.jpg", inputs / "broken.png"]
    report = predict_instances(model, files, tmp_path / "out", CLASSES, score_threshold=0.5, progress=False)
    assert model.training
    assert [path.name for _, path in report.written] == ["street.json", "street_2.json"]
    assert report.failed[0][0].endswith("broken.png") and "cannot be decoded" in report.failed[0][1]

    record = json.loads((tmp_path / "out" / "street.json").read_text())
    assert (record["height"], record["width"], record["score_threshold"]) == (40, 60, 0.5)
    assert [(d["label"], d["class"]) for d in record["detections"]] == [(2, "dog"), (1, "cat")]
    assert record["detections"][0]["score"] == pytest.approx(0.9)
    assert record["detections"][0]["box"] == [35.0, 10.0, 55.0, 35.0]
    mask = mask_utils.decode(record["detections"][0]["mask"])
    np.testing.assert_array_equal(mask, rectangle(10, 35, 35, 55, 40, 60))
    with Image.open(tmp_path / "out" / "street_overlay.png") as overlay:
        assert overlay.size == (60, 40) and overlay.mode == "RGB"
    assert (tmp_path / "out" / "street_2_overlay.png").is_file()
