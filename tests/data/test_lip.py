"""LIP: 20 classes stored as indices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccnet.data import LIP, DatasetError, get_dataset
from tests.data.fakes import LIP_STORED, make_lip_flat, stripes, write_image, write_label


def test_indices_as_stored(lip_root):
    dataset = get_dataset("lip", lip_root, "train")
    assert len(dataset) == 2
    for index, stored in enumerate(LIP_STORED):
        np.testing.assert_array_equal(dataset.load_raw(index)[1], stripes(stored).astype(np.int64))


def test_value_20_is_an_error(lip_root):
    path = sorted((lip_root / "TrainVal_parsing_annotations" / "train_segmentations").iterdir())[0]
    write_label(path, stripes([0, 20]))
    with pytest.raises(DatasetError, match=rf"{path.name} has values \[20\]"):
        LIP(lip_root, "train").load_raw(0)


def test_metadata():
    assert len(LIP.meta.classes) == 20 and LIP.meta.classes[0] == "Background"
    assert LIP.meta.classes[-1] == "Right-shoe" and LIP.meta.crop_size == (473, 473)


def test_flat_ce2p_layout(tmp_path):
    root = make_lip_flat(tmp_path / "ce2p")
    train = get_dataset("lip", root, "train")  # train_id.txt lists train1, train0 (not "unlisted")
    assert [s.image.name for s in train.samples] == ["train0.jpg", "train1.jpg"]
    val = get_dataset("lip", root, "val")  # no val_id.txt: every image
    for dataset in (train, val):
        for index, stored in enumerate(LIP_STORED):
            np.testing.assert_array_equal(dataset.load_raw(index)[1], stripes(stored).astype(np.int64))
    (root / "val_id.txt").write_text("val0\nval7\n")
    with pytest.raises(DatasetError, match=r"val_id.txt lists 1 id\(s\) without an image in val_images/"):
        get_dataset("lip", root, "val")


def test_val_scores_as_the_benchmark(tmp_path):
    """LIP's protocol: the image resized to 473 (keep ratio), logits upsampled back to the original size, flip
    with the left/right channels swapped; pixel accuracy, mean accuracy and mIoU with background scored.

    The scores are checked against CE2P's formulas (pixel acc = sum tp / sum pos, mean acc = mean tp / pos,
    mIoU = mean tp / (pos + res - tp)) on a confusion matrix counted here by brute force; every class occurs
    in the labels, as on LIP val, where CE2P's mean over all classes and ccnet's over present ones agree.
    """
    from ccnet.engine.evaluate import evaluate, raw_pair
    from ccnet.engine.inference import Segmenter

    height, width = 20, 40
    rows = [list(range(10)), list(range(10, 20))]  # 10 stripes of 4 px: every class once
    for k, values in enumerate(rows):
        write_image(tmp_path / "TrainVal_images" / "val_images" / f"{k}.jpg", height=height, width=width)
        path = tmp_path / "TrainVal_parsing_annotations" / "val_segmentations" / f"{k}.png"
        write_label(path, stripes(values, height, width))

    seen_sizes = []

    class LeftRight(torch.nn.Module):
        """Logits of class 14 ("left arm") on the left half of its input, 15 on the right half."""

        num_classes = 20

        def forward(self, x):
            seen_sizes.append(tuple(x.shape[-2:]))
            logits = torch.zeros(x.shape[0], 20, *x.shape[-2:])
            half = x.shape[-1] // 2
            logits[:, 14, :, :half], logits[:, 15, :, half:] = 5.0, 5.0
            return logits

    segmenter = Segmenter(
        LeftRight(), test_scale=LIP.meta.test_scale, flip=True, flip_pairs=LIP.meta.flip_pairs
    )
    metrics = evaluate(
        segmenter, get_dataset("lip", tmp_path, "val", transforms=raw_pair), 20, progress=False
    )
    assert set(seen_sizes) == {(237, 473)}  # 20x40 scaled by min(473 / 40, 473 / 20) = 11.825

    # the prediction at the original size: 14 on columns 0..19, 15 on 20..39 (the flip with swap agrees)
    predicted = np.where(np.arange(width) < width // 2, 14, 15)[None].repeat(height, 0)
    confusion = np.zeros((20, 20), dtype=np.int64)
    for values in rows:
        np.add.at(confusion, (stripes(values, height, width).astype(np.int64), predicted), 1)
    pos, res, tp = confusion.sum(1), confusion.sum(0), np.diag(confusion)
    assert metrics.aacc == pytest.approx(tp.sum() / pos.sum())  # 160 / 1600
    assert metrics.macc == pytest.approx((tp / np.maximum(1, pos)).mean())  # classes 14 and 15 right: 2 / 20
    assert metrics.miou == pytest.approx((tp / np.maximum(1, pos + res - tp)).mean())
    # by hand: classes 14 and 15 each have 80 true positives among the 800 pixels predicted as them
    assert metrics.miou == pytest.approx((80 / 800 + 80 / 800) / 20)
