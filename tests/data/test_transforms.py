"""Paired transforms: label values preserved, nearest interpolation, flip consistency, the crop ratio rule,
padding, normalisation, and evaluation resizing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from ccnet.data import authors_train_transforms, eval_transforms, train_transforms
from ccnet.data.transforms import (
    AUTHORS_SCALES,
    CatMaxRatioRandomCrop,
    PadToSize,
    RandomResize,
    keep_ratio_size,
    photometric_distortion,
)
from ccnet.preprocess import IMAGENET_RGB


def _pair(image: np.ndarray, mask: np.ndarray) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    return tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1).contiguous()), tv_tensors.Mask(
        torch.from_numpy(mask)
    )


def _random_pair(seed: int, values=(0, 3, 7, 255), height=32, width=64):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    # blocks of 4x4 so that resizing has regions to keep
    blocks = rng.choice(np.asarray(values, dtype=np.uint8), size=(height // 4, width // 4))
    return image, np.kron(blocks, np.ones((4, 4), dtype=np.uint8))


@pytest.mark.parametrize("seed", range(8))
def test_train_pipeline_never_invents_label_values(seed):
    image, mask = _random_pair(seed)
    torch.manual_seed(seed)
    out_image, out_mask = train_transforms((24, 48), scale=(64, 32))(*_pair(image, mask))
    assert out_image.dtype == torch.float32 and out_image.shape == (3, 24, 48)
    assert out_mask.dtype == torch.uint8 and out_mask.shape == (24, 48)
    assert set(out_mask.unique().tolist()) <= {0, 3, 7, 255}


@pytest.mark.parametrize("seed", range(4))
def test_authors_pipeline_never_invents_label_values(seed):
    image, mask = _random_pair(seed, values=(1, 2, 9))
    torch.manual_seed(seed)
    out_image, out_mask = authors_train_transforms((40, 40))(*_pair(image, mask))
    assert out_image.shape == (3, 40, 40) and out_mask.shape == (40, 40)
    assert set(out_mask.unique().tolist()) <= {1, 2, 9, 255}


def test_resize_uses_nearest_for_masks():
    mask = np.array([[1, 5], [5, 1]], dtype=np.uint8)
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    _, resized = RandomResize(None, ratio_range=None, ratios=(2.0,))(*_pair(image, mask))
    expected = np.array([[1, 1, 5, 5], [1, 1, 5, 5], [5, 5, 1, 1], [5, 5, 1, 1]])
    np.testing.assert_array_equal(resized.numpy(), expected)  # bilinear would give 3s at the borders


def test_keep_ratio_size():
    assert keep_ratio_size((1024, 2048), (2048, 1024), 0.5) == [512, 1024]  # Cityscapes x 0.5
    assert keep_ratio_size((375, 500), (2048, 512)) == [512, 683]  # short side bound wins
    assert keep_ratio_size((100, 1000), (2048, 512)) == [205, 2048]  # long side bound wins
    assert keep_ratio_size((32, 64), None, 1.5) == [48, 96]


def test_authors_scales_are_discrete_factors_of_the_image_size():
    assert AUTHORS_SCALES == (0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.1)
    image, mask = _random_pair(0, height=20, width=40)
    resize = RandomResize(None, ratio_range=None, ratios=AUTHORS_SCALES)
    allowed = {(int(20 * s + 0.5), int(40 * s + 0.5)) for s in AUTHORS_SCALES}
    for seed in range(10):
        torch.manual_seed(seed)
        out_image, out_mask = resize(*_pair(image, mask))
        assert tuple(out_image.shape[-2:]) in allowed and out_mask.shape == out_image.shape[-2:]


def _flip_probe():
    """Red channel = 4 x column, mask = column // 8: image and mask both encode the column."""
    columns = np.arange(64)
    image = np.zeros((32, 64, 3), dtype=np.uint8)
    image[..., 0] = (4 * columns)[None, :]
    mask = np.tile((columns // 8).astype(np.uint8), (32, 1))
    return image, mask


def _column_from_image(out_image: torch.Tensor) -> torch.Tensor:
    red = out_image[0] * IMAGENET_RGB.std[0] + IMAGENET_RGB.mean[0]  # undo the normalisation
    return torch.round(red / 4).to(torch.int64)


def test_flip_moves_image_and_mask_together():
    image, mask = _flip_probe()
    pipeline = train_transforms(
        (32, 64), scale=None, ratio_range=(1.0, 1.0), cat_max_ratio=1.0, flip_prob=1.0, photometric=False
    )
    out_image, out_mask = pipeline(*_pair(image, mask))
    column = _column_from_image(out_image)
    np.testing.assert_array_equal(column[0].numpy(), np.arange(63, -1, -1))  # flipped
    np.testing.assert_array_equal(out_mask.numpy(), (column // 8).numpy())  # and the mask with it


def test_random_flip_keeps_pairs_consistent():
    image, mask = _flip_probe()
    pipeline = train_transforms(
        (16, 32), scale=None, ratio_range=(1.0, 1.0), cat_max_ratio=1.0, photometric=False
    )
    flipped = set()
    for seed in range(12):
        torch.manual_seed(seed)
        out_image, out_mask = pipeline(*_pair(image, mask))
        column = _column_from_image(out_image)
        np.testing.assert_array_equal(out_mask.numpy(), (column // 8).numpy())
        flipped.add(bool(column[0, 0] > column[0, -1]))
    assert flipped == {True, False}


def _band_mask() -> np.ndarray:
    """32x32: class 2 in columns 0..15, class 1 elsewhere. A 16x16 crop at column offset ``l`` holds
    (16 - l) / 16 of class 2, so it satisfies the 0.75 rule only for l in 5..11 (7 of 17 offsets)."""
    mask = np.ones((32, 32), dtype=np.uint8)
    mask[:, :16] = 2
    return mask


def _max_class_share(crop: np.ndarray) -> tuple[int, float]:
    values, counts = np.unique(crop[crop != 255], return_counts=True)
    return len(values), counts.max() / counts.sum()


def test_crop_respects_cat_max_ratio_when_possible():
    mask = _band_mask()
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    with_rule, without_rule = 0, 0
    for seed in range(40):
        for ratio, counter in ((0.75, "with"), (1.0, "without")):
            torch.manual_seed(seed)
            _, crop = CatMaxRatioRandomCrop((16, 16), cat_max_ratio=ratio)(*_pair(image, mask))
            classes, share = _max_class_share(crop.numpy())
            good = classes > 1 and share < 0.75
            if counter == "with":
                with_rule += good
            else:
                without_rule += good
    # 7/17 of crops are good by chance; 10 attempts make a good one ~99.5% likely
    assert with_rule >= 39
    assert without_rule <= 28


def test_crop_ratio_ignores_the_ignore_label():
    crop = CatMaxRatioRandomCrop((4, 4))
    ignore, one, two = 255, 1, 2

    def make(n_one, n_two):
        values = [one] * n_one + [two] * n_two
        return torch.tensor(values + [ignore] * (16 - len(values)), dtype=torch.uint8).reshape(4, 4)

    assert crop._acceptable(make(2, 2))  # 50% of the labelled pixels; ignore (12 of 16) does not count
    assert crop._acceptable(make(3, 2))  # 60%
    assert not crop._acceptable(make(3, 1))  # 75% is not < 75%
    assert not crop._acceptable(make(6, 0))  # one class only
    assert not crop._acceptable(make(0, 0))  # nothing labelled


def test_padding_fills_image_with_zero_and_mask_with_ignore():
    image, mask = _random_pair(1, values=(4,), height=20, width=28)
    pipeline = train_transforms(
        (32, 64), scale=None, ratio_range=(1.0, 1.0), flip_prob=0.0, photometric=False
    )
    out_image, out_mask = pipeline(*_pair(image, mask))
    assert out_image.shape == (3, 32, 64) and out_mask.shape == (32, 64)
    assert bool((out_mask[:20, :28] == 4).all())
    assert bool((out_mask[20:] == 255).all()) and bool((out_mask[:, 28:] == 255).all())
    assert bool((out_image[:, 20:] == 0).all()) and bool((out_image[:, :, 28:] == 0).all())


def test_pad_to_size_is_a_no_op_when_large_enough():
    image, mask = _pair(*_random_pair(2))
    out_image, out_mask = PadToSize((16, 16))(image, mask)
    assert torch.equal(out_image, image) and torch.equal(out_mask, mask)


def test_photometric_distortion_changes_the_image_only():
    image, mask = _pair(*_random_pair(3))
    changed = 0
    for seed in range(6):
        torch.manual_seed(seed)
        out_image, out_mask = photometric_distortion()(image, mask)
        assert torch.equal(out_mask, mask) and isinstance(out_mask, tv_tensors.Mask)
        changed += not torch.equal(out_image, image)
    assert changed >= 4


def test_mmseg_normalisation():
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    image[0, 0] = (124, 116, 104)
    out_image, _ = eval_transforms()(*_pair(image, np.zeros((2, 2), dtype=np.uint8)))
    expected = [(124 - 123.675) / 58.395, (116 - 116.28) / 57.12, (104 - 103.53) / 57.375]
    np.testing.assert_allclose(out_image[:, 0, 0].numpy(), expected, rtol=1e-5)


def test_authors_normalisation_is_bgr_mean_only():
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    image[0, 0] = (100, 110, 120)  # R, G, B
    out_image, _ = eval_transforms(normalization="authors")(*_pair(image, np.zeros((2, 2), dtype=np.uint8)))
    # the authors' Caffe means in BGR order (104.008, 116.669, 122.679), as published; no std division
    expected = [120 - 104.008, 110 - 116.669, 100 - 122.679]
    np.testing.assert_allclose(out_image[:, 0, 0].numpy(), expected, rtol=1e-5)


def test_eval_resizes_the_image_and_keeps_the_mask():
    image, mask = _random_pair(4, height=16, width=32)
    out_image, out_mask = eval_transforms((64, 32))(*_pair(image, mask))
    assert out_image.shape == (3, 32, 64)
    assert torch.equal(out_mask, torch.from_numpy(mask))


def test_eval_can_resize_the_mask_too():
    image, mask = _random_pair(4, height=16, width=32)
    _, out_mask = eval_transforms((64, 32), resize_mask=True)(*_pair(image, mask))
    np.testing.assert_array_equal(out_mask.numpy(), np.kron(mask, np.ones((2, 2), dtype=np.uint8)))


def test_clip_frames_get_identical_parameters():
    image, mask = _random_pair(5)
    clip_image = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1).expand(3, -1, -1, -1).contiguous())
    clip_mask = tv_tensors.Mask(torch.from_numpy(mask).expand(3, -1, -1).contiguous())
    torch.manual_seed(0)
    out_image, out_mask = train_transforms((16, 16), scale=(64, 32))(clip_image, clip_mask)
    assert out_image.shape == (3, 3, 16, 16) and out_mask.shape == (3, 16, 16)
    assert torch.equal(out_image[0], out_image[2]) and torch.equal(out_mask[0], out_mask[1])


def test_pipelines_are_v2_composes():
    assert isinstance(train_transforms((8, 8)), v2.Compose) and isinstance(eval_transforms(), v2.Compose)


# Every training recipe with its resizing and cropping made deterministic (scale 1, crop = image size) so that
# the flip is the only geometric change. Photometric jitter is off (it changes the colour that encodes the
# column; test_photometric_distortion_changes_the_image_only covers the mask). The authors' recipe
# normalises BGR, mean only: the red value is then in the last channel.
RECIPES = {
    "mmseg": lambda flip_prob: train_transforms(
        (32, 64),
        scale=None,
        ratio_range=(1.0, 1.0),
        cat_max_ratio=1.0,
        flip_prob=flip_prob,
        photometric=False,
    ),
    "authors": lambda flip_prob: authors_train_transforms((32, 64), scales=(1.0,), flip_prob=flip_prob),
}


def _decoded_column(out_image: torch.Tensor, recipe: str) -> torch.Tensor:
    """(..., H, W) source column of each output pixel, read from the red value (4 x column)."""
    if recipe == "authors":
        red = out_image[..., 2, :, :] + 122.679  # BGR, the authors' mean of red, no std
    else:
        red = out_image[..., 0, :, :] * 58.395 + 123.675  # ImageNet std and mean of red
    return torch.round(red / 4).to(torch.int64)


@pytest.mark.parametrize("clip", [False, True], ids=["image", "clip"])
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_every_recipe_flips_the_mask_with_the_image(recipe, clip):
    # The red channel and the mask both encode the source column: after the pipeline the mask must be, pixel
    # by pixel, column // 8 of the column the image pixel came from (a mask left unflipped fails this).
    image, mask = _pair(*_flip_probe())
    if clip:  # video: (T, 3, H, W) frames and (T, H, W) masks share one draw
        image = tv_tensors.Image(image.expand(2, -1, -1, -1).contiguous())
        mask = tv_tensors.Mask(mask.expand(2, -1, -1).contiguous())
    seen = set()
    for flip_prob, seeds in ((1.0, range(2)), (0.0, range(1)), (0.5, range(10))):
        pipeline = RECIPES[recipe](flip_prob)
        for seed in seeds:
            torch.manual_seed(seed)
            out_image, out_mask = pipeline(image, mask)
            column = _decoded_column(out_image, recipe)
            np.testing.assert_array_equal(out_mask.numpy(), (column // 8).numpy())
            rows = column.reshape(-1, 64)  # every row of every frame holds the same columns
            assert bool((rows == rows[:1]).all())
            flipped = rows[0].tolist() == list(range(63, -1, -1))
            assert flipped or rows[0].tolist() == list(range(64))
            seen.add((flip_prob, flipped))
    assert seen >= {(1.0, True), (0.0, False), (0.5, True), (0.5, False)}  # the random flip does both
    assert not seen & {(1.0, False), (0.0, True)}
