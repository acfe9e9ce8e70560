"""Flip test-time augmentation swaps the logit channels of left/right class pairs on the mirrored pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ccnet.data.meta import LIP
from ccnet.deploy.fast import optimize_for_inference
from ccnet.engine.inference import Segmenter

# Logits of the model below at each position (class k, column x) of a 1x3 image, whatever the image:
POSITION_LOGITS = np.array(
    [
        [0.0, 1.0, 2.0],  # class 0
        [3.0, 0.0, 0.5],  # class 1 ("left")
        [0.0, 0.0, 3.0],  # class 2 ("right")
    ]
)
# The mirrored pass gives POSITION_LOGITS again; flipped back its columns read x = 2, 1, 0:
UNMIRRORED = np.array([[2.0, 1.0, 0.0], [0.5, 0.0, 3.0], [3.0, 0.0, 0.0]])
# ... and with the pair (1, 2) the rows of classes 1 and 2 trade places:
UNMIRRORED_SWAPPED = np.array([[2.0, 1.0, 0.0], [3.0, 0.0, 0.0], [0.5, 0.0, 3.0]])


class PositionModel(nn.Module):
    """(B, 3, 1, 3) -> (B, 3, 1, 3) logits that depend on the pixel position only (POSITION_LOGITS)."""

    num_classes = 3

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("table", torch.tensor(POSITION_LOGITS, dtype=torch.float32)[:, None, :])

    def forward(self, x):
        return self.table.expand(x.shape[0], -1, -1, -1)


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=0))
    return exp / exp.sum(axis=0)


IMAGE = np.zeros((1, 3, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("pairs", "mirrored"), [((), UNMIRRORED), ([(1, 2)], UNMIRRORED_SWAPPED), ([(2, 1)], UNMIRRORED_SWAPPED)]
)
def test_flip_average_with_and_without_pairs(pairs, mirrored):
    segmenter = Segmenter(PositionModel(), mode="whole", test_scale=None, flip=True, flip_pairs=pairs)
    prediction = segmenter.predict(IMAGE, return_probs=True)
    expected = (_softmax(POSITION_LOGITS) + _softmax(mirrored)) / 2  # (K, W) probabilities averaged
    np.testing.assert_allclose(prediction.probs[:, 0].numpy(), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(prediction.labels[0].numpy(), expected.argmax(0))


def test_pairs_change_the_labels():
    # at x = 2 the model says class 2 (logit 3); the mirrored pass sees that pixel at x = 0, where it says
    # class 1 ("left"), which is class 2 ("right") once swapped: the plain average picks 1, the swapped one 2
    plain = (_softmax(POSITION_LOGITS) + _softmax(UNMIRRORED)).argmax(0)
    swapped = (_softmax(POSITION_LOGITS) + _softmax(UNMIRRORED_SWAPPED)).argmax(0)
    assert plain.tolist() != swapped.tolist()
    for pairs, labels in (((), plain), ([(1, 2)], swapped)):
        segmenter = Segmenter(PositionModel(), test_scale=None, flip=True, flip_pairs=pairs)
        assert segmenter.predict(IMAGE)[0].tolist() == labels.tolist()


def test_no_flip_ignores_pairs():
    probs = Segmenter(PositionModel(), test_scale=None, flip_pairs=[(1, 2)]).predict(IMAGE, return_probs=True)
    np.testing.assert_allclose(probs.probs[:, 0].numpy(), _softmax(POSITION_LOGITS), rtol=1e-6)


def test_pairs_from_the_model_and_bad_pairs():
    model = PositionModel()
    assert Segmenter(model).flip_pairs == ()
    model.flip_pairs = ((1, 2),)
    assert Segmenter(model).flip_pairs == ((1, 2),)
    assert Segmenter(model, flip_pairs=()).flip_pairs == ()
    assert Segmenter(optimize_for_inference(model, channels_last=False)).flip_pairs == ((1, 2),)
    lip_like = PositionModel()
    lip_like.num_classes, lip_like.classes = 20, LIP.classes  # e.g. an ONNX file with LIP's class names
    assert Segmenter(lip_like).flip_pairs == LIP.flip_pairs
    with pytest.raises(
        ValueError, match=r"Segmenter\(flip_pairs=...\): pair \(1, 3\) has an id outside 0..2"
    ):
        Segmenter(PositionModel(), flip_pairs=[(1, 3)])


def test_onnx_metadata_carries_the_pairs(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from ccnet.deploy.export import METADATA_PREFIX, _metadata
    from ccnet.deploy.onnxruntime_backend import OrtSegmentationModel

    written = _metadata(nn.Identity(), {"classes": list(LIP.classes)})
    assert written[METADATA_PREFIX + "flip_pairs"] == "[[14, 15], [16, 17], [18, 19]]"
    assert METADATA_PREFIX + "flip_pairs" not in _metadata(nn.Identity(), {"classes": ["a", "b"]})

    # a hand-built 1x1-conv graph (no torch.onnx export: fast) carrying metadata
    weight = numpy_helper.from_array(np.zeros((4, 3, 1, 1), dtype=np.float32), "weight")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "weight"], ["logits"])],
        "toy",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["b", 3, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 4, "h", "w"])],
        [weight],
    )
    for pairs, classes, expected in (
        ("[[1, 3]]", None, ((1, 3),)),
        (None, list(LIP.classes), LIP.flip_pairs),
    ):
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        proto.ir_version = 8
        metadata = {
            "num_classes": str(4 if classes is None else 20),
            "flip_pairs": pairs,
            "classes": None if classes is None else str(classes),
        }
        for key, value in metadata.items():
            if value is not None:
                entry = proto.metadata_props.add()
                entry.key, entry.value = METADATA_PREFIX + key, value.replace("'", '"')
        onnx.save(proto, tmp_path / "toy.onnx")
        assert OrtSegmentationModel(tmp_path / "toy.onnx").flip_pairs == expected


def test_flip_with_swap_is_mirror_equivariant():
    """With the swap, flip testing of the mirror image gives the mirror image (classes swapped) of the flip
    testing of the image: the average is symmetric. Without the swap it is not."""
    from ccnet.models import create_model

    torch.manual_seed(0)
    model = create_model("ccnet_tiny", num_classes=4).eval()
    image = torch.randint(0, 256, (3, 16, 20), dtype=torch.uint8)
    swap = [0, 2, 1, 3]  # classes 1 and 2 are a pair
    results = {}
    for pairs in ([(1, 2)], ()):
        segmenter = Segmenter(model, test_scale=None, flip=True, flip_pairs=pairs)
        probs = segmenter.predict(image, return_probs=True).probs
        mirrored = segmenter.predict(image.flip(-1), return_probs=True).probs
        results[bool(pairs)] = torch.allclose(mirrored, probs.flip(-1)[swap], atol=1e-6)
    assert results == {True: True, False: False}


def test_flip_pairs_demo_smoke(tmp_path, capsys):
    import json

    from ccnet.reproduce.flip_pairs import main

    out = tmp_path / "result.json"
    argv = ["--iters", "1", "--batch-size", "2", "--val-length", "1", "--no-progress", "--json", str(out)]
    assert main(argv) == 0
    assert "flip + swap" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert set(result["scores"]) == {"no flip", "flip, no swap", "flip + swap"}


def test_flip_pairs_report_section_says_whether_the_swap_wins_on_every_seed(tmp_path):
    from ccnet.reproduce.flip_pairs import report_section

    def run(seed, no_swap, swap):
        iou = {"left object": 0.5, "right object": 0.25, "background": 1.0}
        scores = {"no flip": 0.9, "flip, no swap": no_swap, "flip + swap": swap}
        return {
            "settings": {"seed": seed, "iters": 10, "batch_size": 2},
            "scores": {name: {"mIoU": value, "IoU": iou} for name, value in scores.items()},
        }

    section = report_section([run(0, 0.6, 0.95), run(1, 0.7, 0.9)])
    assert "| 0 | 90.00 | 60.00 | 95.00 | 50 / 25 | 50 / 25 |" in section
    assert "every seed: **yes**" in section
    assert "every seed: **NO**" in report_section([run(0, 0.6, 0.95), run(1, 0.9, 0.8)])
