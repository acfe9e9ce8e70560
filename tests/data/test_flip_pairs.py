"""Left/right flip pairs: declared by the dataset metadata, swapped by every training flip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from ccnet.data import LIP, default_transforms, get_dataset
from ccnet.data.meta import (
    ADE20K,
    CAMVID,
    CITYSCAPES,
    VOC,
    DatasetMeta,
    flip_pairs_for_classes,
    flip_permutation,
)
from ccnet.data.transforms import RandomHorizontalFlip, authors_train_transforms, train_transforms
from tests.data.fakes import LIP_STORED, stripes

# LIP_STORED's samples mirrored by hand, then 14<->15, 16<->17, 18<->19 swapped by hand
LIP_FLIPPED = [[0, 19, 18, 13, 5, 2, 1, 0], [0, 0, 255, 255, 16, 17, 14, 15]]
LIP_FLIPPED_NO_SWAP = [[0, 18, 19, 13, 5, 2, 1, 0], [0, 0, 255, 255, 17, 16, 15, 14]]


def test_declared_pairs():
    assert LIP.meta.flip_pairs == ((14, 15), (16, 17), (18, 19))
    for meta in (CITYSCAPES, ADE20K, VOC, CAMVID):
        assert meta.flip_pairs == ()
    assert flip_permutation(6, [(1, 4)]) == [0, 4, 2, 3, 1, 5]
    assert flip_pairs_for_classes(LIP.meta.classes) == LIP.meta.flip_pairs
    assert flip_pairs_for_classes(CITYSCAPES.classes) == () and flip_pairs_for_classes(["a", "b"]) == ()


@pytest.mark.parametrize(
    ("pairs", "message"),
    [([(0, 3)], "outside 0..2"), ([(1, 1)], "repeats"), ([(0, 1), (1, 2)], "repeats"), ([(0,)], "two class")],
)
def test_bad_pairs_are_refused(pairs, message):
    with pytest.raises(ValueError, match=rf"toy: flip_pairs.*{message}"):
        DatasetMeta("toy", ("a", "b", "c"), ((0, 0, 0),) * 3, None, None, (8, 8), flip_pairs=pairs)


def _flipping_pipelines(crop):
    """Each training recipe, made deterministic: scale 1, the whole image as crop, flip always."""
    pairs = LIP.meta.flip_pairs
    return {
        "mmseg": train_transforms(
            crop,
            ratio_range=(1.0, 1.0),
            cat_max_ratio=1.0,
            flip_prob=1.0,
            photometric=False,
            flip_pairs=pairs,
        ),
        "authors": authors_train_transforms(crop, scales=(1.0,), flip_prob=1.0, flip_pairs=pairs),
    }


@pytest.mark.parametrize("recipe", ["mmseg", "authors"])
def test_flipped_lip_sample_has_swapped_labels(lip_root, recipe):
    _, mask = get_dataset("lip", lip_root, "train").load_raw(0)
    transforms = _flipping_pipelines(mask.shape)[recipe]
    dataset = get_dataset("lip", lip_root, "train", transforms=transforms)
    for index, expected in enumerate(LIP_FLIPPED):
        np.testing.assert_array_equal(dataset[index]["mask"].numpy(), stripes(expected))


@pytest.mark.parametrize("recipe", ["mmseg", "authors"])
def test_default_lip_pipelines_swap(recipe):
    flips = [
        t
        for t in default_transforms(LIP.meta, train=True, recipe=recipe).transforms
        if "Flip" in type(t).__name__
    ]
    assert len(flips) == 1 and isinstance(flips[0], RandomHorizontalFlip)
    assert flips[0].flip_pairs == LIP.meta.flip_pairs and flips[0].p == 0.5
    cityscapes = default_transforms(CITYSCAPES, train=True, recipe=recipe).transforms
    assert [t.flip_pairs for t in cityscapes if isinstance(t, RandomHorizontalFlip)] == [()]


def test_flip_of_clips_and_without_pairs():
    clip = torch.from_numpy(np.stack([stripes(LIP_STORED[1])] * 2))  # (T, H, W)
    frames = tv_tensors.Image(torch.zeros(2, 3, *clip.shape[-2:], dtype=torch.uint8))
    _, swapped = RandomHorizontalFlip(1.0, LIP.meta.flip_pairs)(frames, tv_tensors.Mask(clip))
    _, plain = RandomHorizontalFlip(1.0)(frames, tv_tensors.Mask(clip))
    for t in range(2):
        np.testing.assert_array_equal(swapped[t].numpy(), stripes(LIP_FLIPPED[1]))
        np.testing.assert_array_equal(plain[t].numpy(), stripes(LIP_FLIPPED_NO_SWAP[1]))
    _, kept = RandomHorizontalFlip(0.0, LIP.meta.flip_pairs)(frames, tv_tensors.Mask(clip))
    assert torch.equal(kept, clip)


def test_handed_task_labels_the_side_of_the_bar():
    from ccnet.data import HandedDataset

    dataset = HandedDataset("val", length=6)
    assert dataset.meta.flip_pairs == ((1, 2),) and dataset.classes[1:3] == ("left object", "right object")
    for index in range(len(dataset)):
        image, label, info = dataset.generate(index)
        columns = np.arange(label.shape[1])[None].repeat(label.shape[0], 0)
        bar = (columns >= info["bar_x"]) & (columns < info["bar_x"] + 4)
        assert (label[bar] == 3).all() and (label[~bar] != 3).all()
        assert (columns[label == 1] < info["bar_x"]).all() and (
            columns[label == 2] >= info["bar_x"] + 4
        ).all()
        assert (image[bar][:, 0] > 150).all()  # the red bar


def test_folder_format_declares_pairs(tmp_path):
    from ccnet.data import DatasetError
    from tests.data.fakes import make_folder

    root = make_folder(
        tmp_path / "own", "classes: [background, left hand, right hand]\nflip_pairs: [[1, 2]]\n"
    )
    assert get_dataset("folder", root, "all").meta.flip_pairs == ((1, 2),)
    (root / "meta.yaml").write_text("classes: [background, left hand, right hand]\nflip_pairs: [[1, 3]]\n")
    with pytest.raises(DatasetError, match=r"meta.yaml: 'flip_pairs': pair \(1, 3\) has an id outside 0..2"):
        get_dataset("folder", root, "all")
