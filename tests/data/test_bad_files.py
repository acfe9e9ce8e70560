"""Bad data that used to pass silently: 16-bit images, mistyped meta.yaml values, broken links, labels that
are all ignore; and the options a dataset accepts."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ccnet.data import DatasetError, FolderDataset, check_dataset, dataset_options, read_image
from ccnet.data.files import image_bit_depth, scale_16_to_8_bits
from tests.data.fakes import FOLDER_STEMS, stripes, write_label


def test_sixteen_bit_grey_image_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16).repeat(2, axis=0)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert image_bit_depth(path) == 16
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (2, 4, 3)
    np.testing.assert_array_equal(image[0, :, 0], [0, 1, 128, 255])
    assert (image[..., 0] == image[..., 2]).all()


def test_sixteen_bit_ramp_keeps_its_histogram(tmp_path):
    """A real 16-bit photo's values spread over 0..65535; clipping made 99.5% of them 255."""
    ramp = np.linspace(0, 65535, 200 * 50).astype(np.uint16).reshape(200, 50)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    image = read_image(tmp_path / "ramp.png")[..., 0]
    assert (image == 255).mean() < 0.01 and abs(float(image.mean()) - 127.5) < 1


def test_scale_16_to_8_bits_is_rounded():
    np.testing.assert_array_equal(
        scale_16_to_8_bits(np.array([0, 128, 129, 65535 - 128, 65535], dtype=np.uint16)), [0, 0, 1, 255, 255]
    )


def test_eight_bit_images_are_unchanged(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), pixels)
    assert image_bit_depth(tmp_path / "rgb.png") == 8


def test_float_image_out_of_range_is_refused(tmp_path):
    Image.fromarray(np.full((3, 3), 0.5, dtype=np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(DatasetError, match=r"float\.tif has float pixels \(values 0\.5\.\.0\.5\)"):
        read_image(tmp_path / "float.tif")
    Image.fromarray(np.full((3, 3), 7, dtype=np.int32)).save(tmp_path / "int.tif")
    assert (read_image(tmp_path / "int.tif") == 7).all()


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ("classes: [a, b]\nignore_index: abc\n", r"meta\.yaml: 'ignore_index' must be an integer .*'abc'"),
        ("classes: [a, b]\nignore_index: true\n", r"'ignore_index' must be an integer"),
        (
            "classes: [a, b]\nreduce_zero_label: 'false'\n",
            r"'reduce_zero_label' must be true or false.*'false'",
        ),
        ("classes: [a, b]\nreduce_zero_label: 1\n", r"'reduce_zero_label' must be true or false"),
        ("classes: [a, b]\ncrop_size: [512, 0]\n", r"'crop_size' must be a list of two positive integers"),
        ("classes: [a, b]\npalette: [[0, 0, 0], [1.5, 0, 0]]\n", r"'palette' must be 2"),
        ("classes: [a, b]\nignore: 200\n", r"unknown key\(s\) \['ignore'\]"),
        ("classes: [a, b]\nname: 3\n", r"'name' must be a non-empty string"),
    ],
)
def test_mistyped_metadata_is_refused(folder_root, meta, message):
    (folder_root / "meta.yaml").write_text(meta)
    with pytest.raises(DatasetError, match=message):
        FolderDataset(folder_root)


def test_broken_symlink_is_an_error(folder_root, tmp_path):
    link = folder_root / "images" / "zz.jpg"
    link.symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(DatasetError, match=r"zz\.jpg is a broken symbolic link: its target .*gone\.jpg"):
        FolderDataset(folder_root)
    report = check_dataset("folder", folder_root, "all", progress=False)
    assert not report.ok and "broken symbolic link" in report.summary()


def test_unpaired_files_are_described_on_one_line(folder_root):
    (folder_root / "masks" / f"{FOLDER_STEMS[0]}.png").unlink()
    with pytest.raises(DatasetError) as error:
        FolderDataset(folder_root)
    assert "\n" not in str(error.value) and FOLDER_STEMS[0] in str(error.value)


def test_check_refuses_labels_that_are_all_ignore(folder_root):
    for stem in FOLDER_STEMS:
        write_label(folder_root / "masks" / f"{stem}.png", stripes([255, 255]))
    report = check_dataset("folder", folder_root, "all", progress=False)
    assert report.nothing_to_learn and not report.ok and not report.bad_files
    assert "every label pixel" in report.summary()


def test_check_reports_sixteen_bit_images(folder_root):
    image = folder_root / "images" / f"{FOLDER_STEMS[0]}.jpg"
    image.unlink()
    Image.fromarray(np.full((32, 64), 40000, dtype=np.uint16)).save(image.with_suffix(".png"))
    report = check_dataset("folder", folder_root, "all", progress=False)
    assert report.ok and report.sixteen_bit == [str(image.with_suffix(".png"))]


def test_dataset_options_follow_kwargs_into_the_bases():
    assert {"length", "seed", "image_size", "marker_size"} <= set(dataset_options("context"))
    assert {"clip_length", "length", "image_size"} <= set(dataset_options("context_video"))
    assert dataset_options("folder") == []
