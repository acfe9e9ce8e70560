"""COCO-format instance data (ccnet.data.coco) and `ccnet data check coco`, on trees written by
tests/data/coco_fakes.py. Expected targets come from the masks the fakes drew, not from pycocotools."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

import ccnet.cli.data
from ccnet.data import DatasetError
from ccnet.data.coco import (
    CocoInstanceDataset,
    check_coco,
    coco_dataset,
    coco_ground_truth,
    collate_instances,
    format_coco_report,
    instance_eval_transforms,
    instance_train_transforms,
)
from tests.data import coco_fakes
from tests.data.coco_fakes import DOG, EXPECTED, HEIGHT, POLYGON, WIDTH, ZEBRA, image_pixels, rectangle

# pycocotools' decoder under numpy 2 warns about its own internals (the tests decode RLE with it)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture
def coco_root(tmp_path):
    return coco_fakes.make_coco2017(tmp_path / "coco", "val")


def _write(tmp_path, data):
    ann, images = tmp_path / "set" / "instances.json", tmp_path / "set" / "images"
    coco_fakes.write_coco(ann, images, data)
    return ann, images


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    ccnet.cli.data.add_arguments(parser)
    return ccnet.cli.data.run(parser.parse_args(argv))


def _polygon_mask(polygon: list[float]) -> np.ndarray:
    """Pixels whose centre lies inside the (axis-aligned rectangle) polygon: the oracle of rasterisation."""
    xs, ys = polygon[0::2], polygon[1::2]
    cols, rows = np.arange(WIDTH) + 0.5, np.arange(HEIGHT) + 0.5
    inside_x = (cols > min(xs)) & (cols < max(xs))
    inside_y = (rows > min(ys)) & (rows < max(ys))
    return (inside_y[:, None] & inside_x[None, :]).astype(np.uint8)


def test_official_layout_samples_match_the_drawn_instances(coco_root):
    dataset = coco_dataset(coco_root, "val")
    assert len(dataset) == 3 and dataset.image_ids == [1, 2, 3]
    assert dataset.classes == ("__background__", "cat", "dog", "zebra") and dataset.num_classes == 4
    assert dataset.label_to_category_id == {1: 3, 2: 7, 3: 90}
    assert dataset.category_id_to_label == {3: 1, 7: 2, 90: 3}
    assert len(dataset.coco.anns) == 4  # the ground truth keeps the crowd region for COCOeval

    for index, image_id in enumerate(dataset.image_ids):
        image, target = dataset[index]
        assert isinstance(image, tv_tensors.Image) and image.dtype == torch.float32
        assert image.shape == (3, HEIGHT, WIDTH) and image.min() >= 0 and image.max() <= 1
        expected_pixels = image_pixels(image_id).transpose(2, 0, 1) / 255
        np.testing.assert_allclose(image.numpy(), expected_pixels, atol=1e-6)
        assert target["image_id"] == image_id
        assert isinstance(target["boxes"], tv_tensors.BoundingBoxes) and target["boxes"].format.name == "XYXY"
        assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
        assert isinstance(target["masks"], tv_tensors.Mask) and target["masks"].dtype == torch.uint8
        expected = EXPECTED[image_id]  # the crowd region of image 1 is not a target
        assert target["boxes"].shape == (len(expected), 4) and target["masks"].shape == (
            len(expected),
            32,
            48,
        )
        assert target["labels"].tolist() == [label for label, _, _ in expected]
        assert target["boxes"].tolist() == [box for _, box, _ in expected]
        for mask, (_, _, drawn) in zip(target["masks"].numpy(), expected, strict=True):
            np.testing.assert_array_equal(mask, _polygon_mask(POLYGON) if drawn is None else drawn)


def test_mask_encodings_decode_to_the_same_mask(tmp_path):
    """Polygon, uncompressed RLE and compressed RLE of one shape give one mask."""
    square = rectangle(2, 4, 12, 14)
    data = coco_fakes.annotations()
    data["annotations"] = [
        {"id": n + 1, "image_id": 2, "category_id": 7, "segmentation": segmentation, "area": 100.0,
         "bbox": [4.0, 2.0, 10.0, 10.0], "iscrowd": 0}
        for n, segmentation in enumerate(
            [[POLYGON], coco_fakes.uncompressed_rle(square), coco_fakes.compressed_rle(square)]
        )
    ]  # fmt: skip
    dataset = CocoInstanceDataset(*_write(tmp_path, data))
    _, target = dataset[dataset.image_ids.index(2)]
    for mask in target["masks"].numpy():
        np.testing.assert_array_equal(mask, square)


def test_any_coco_format_set_and_its_options(tmp_path):
    data = coco_fakes.annotations()
    for image in data["images"]:  # file names with sub-folders, as some exports write them
        image["file_name"] = f"part/{image['file_name']}"
    ann, images = _write(tmp_path, data)
    dataset = coco_dataset(ann_file=ann, image_dir=images)
    assert len(dataset) == 3 and dataset.empty_images == 1
    relative = coco_dataset(tmp_path, ann_file="set/instances.json", image_dir="set/images")  # under a root
    assert relative.ann_file == ann and relative.image_dir == images
    assert len(coco_dataset(ann_file=ann, image_dir=images, drop_empty=True)) == 2

    # torchvision's published COCO weights predict category ids: label = category id, 91 classes
    by_id = coco_dataset(ann_file=ann, image_dir=images, category_ids_as_labels=True)
    assert by_id.num_classes == 91 and by_id.classes[7] == "dog" and by_id.classes[4] == "N/A"
    assert by_id[0][1]["labels"].tolist() == [3, 7] and by_id.label_to_category_id == {3: 3, 7: 7, 90: 90}


def test_test_dev_layout_has_images_without_annotations(tmp_path):
    data = coco_fakes.annotations()
    del data["annotations"]
    root = tmp_path / "coco"
    coco_fakes.write_coco(root / "annotations" / "image_info_test-dev2017.json", root / "test2017", data)
    dataset = coco_dataset(root, "test-dev")
    assert len(dataset) == 3 and dataset[1][1]["boxes"].shape == (0, 4) and dataset.empty_images == 3


def test_train_transforms_move_boxes_and_masks_with_the_image(coco_root):
    """Flip (p=1) then shorter side 32 -> 64: the oracle is the box mirrored by hand and the mask
    mirrored and enlarged by pixel repetition (nearest)."""
    dataset = coco_dataset(coco_root, "val", transforms=instance_train_transforms(64, 1333, flip_prob=1.0))
    image, target = dataset[1]  # image 2: the zebra
    assert image.shape == (3, 64, 96) and isinstance(image, tv_tensors.Image)
    x0, y0, x1, y1 = EXPECTED[2][0][1]
    assert target["boxes"].tolist() == [[2 * (WIDTH - x1), 2 * y0, 2 * (WIDTH - x0), 2 * y1]]
    enlarged = np.kron(ZEBRA[:, ::-1], np.ones((2, 2), dtype=np.uint8))
    np.testing.assert_array_equal(target["masks"][0].numpy(), enlarged)
    assert target["labels"].tolist() == [3] and target["image_id"] == 2

    image, target = dataset[2]  # the image without instances goes through the same transforms
    assert (
        image.shape == (3, 64, 96)
        and target["boxes"].shape == (0, 4)
        and target["masks"].shape == (0, 64, 96)
    )

    # the longer side is bounded: r = min(64 / 32, 72 / 48) = 1.5
    bounded = coco_dataset(coco_root, "val", transforms=instance_train_transforms(64, 72, flip_prob=0.0))
    image, target = bounded[0]
    assert image.shape == (3, 48, 72) and target["masks"].shape == (2, 48, 72)
    assert target["boxes"][1].tolist() == [1.5 * v for v in EXPECTED[1][1][1]]


def test_multi_scale_draws_the_shorter_side_from_the_list(coco_root):
    dataset = coco_dataset(coco_root, "val", transforms=instance_train_transforms([32, 48, 64], 1333))
    torch.manual_seed(0)
    shorter = {min(dataset[0][0].shape[-2:]) for _ in range(30)}
    assert shorter == {32, 48, 64}


def test_sanitize_drops_boxes_under_one_pixel_with_their_masks(tmp_path):
    data = coco_fakes.annotations()
    thin = rectangle(20, 10, 30, 11)  # one column wide; its box is made thinner still
    data["annotations"].append(
        {"id": 30, "image_id": 2, "category_id": 3, "segmentation": coco_fakes.compressed_rle(thin),
         "area": 5.0, "bbox": [10.0, 20.0, 0.5, 10.0], "iscrowd": 0}
    )  # fmt: skip
    ann, images = _write(tmp_path, data)
    raw = CocoInstanceDataset(ann, images)
    assert raw[1][1]["labels"].tolist() == [3, 1]
    kept = CocoInstanceDataset(ann, images, transforms=instance_train_transforms(32, 1333, flip_prob=0.0))
    _, target = kept[1]
    assert target["labels"].tolist() == [3] and target["masks"].shape == (1, 32, 48)
    np.testing.assert_array_equal(target["masks"][0].numpy(), ZEBRA)


def test_eval_transforms_and_collate(coco_root):
    dataset = coco_dataset(coco_root, "val", transforms=instance_eval_transforms())
    assert dataset[0][0].shape == (3, 32, 48)
    resized = coco_dataset(coco_root, "val", transforms=instance_eval_transforms(64))
    images, targets = collate_instances([resized[0], resized[1]])
    assert [tuple(i.shape) for i in images] == [(3, 64, 96)] * 2
    assert [t["image_id"] for t in targets] == [1, 2]
    np.testing.assert_array_equal(targets[0]["masks"][1].numpy(), np.kron(DOG, np.ones((2, 2), np.uint8)))


def test_coco_ground_truth_from_generated_targets():
    targets = [
        ((HEIGHT, WIDTH), {"image_id": 5, "labels": torch.tensor([2]), "masks": torch.from_numpy(DOG[None])}),
        ((HEIGHT, WIDTH), {"image_id": 6, "labels": torch.zeros(0), "masks": torch.zeros(0, HEIGHT, WIDTH)}),
    ]
    coco = coco_ground_truth(targets, ("__background__", "cat", "dog"))
    assert sorted(coco.imgs) == [5, 6] and [c["name"] for c in coco.loadCats(coco.getCatIds())] == [
        "cat",
        "dog",
    ]
    (annotation,) = coco.anns.values()
    assert annotation["category_id"] == 2 and annotation["bbox"] == coco_fakes.box_of(DOG)
    assert annotation["area"] == DOG.sum()
    np.testing.assert_array_equal(coco.annToMask(annotation), DOG)


# ---------------------------------------------------------------------------------------------------------
# bad input: one error naming the file and the image id


def _break(tmp_path, change):
    data = coco_fakes.annotations()
    change(data)
    return _write(tmp_path, data)


def _set(field, value, annotation_index=0):
    def change(data):
        data["annotations"][annotation_index][field] = value

    return change


BAD_ANNOTATIONS = {
    "negative box": (
        _set("bbox", [4.0, 2.0, 10.0, -1.0]),
        1,
        "annotation id 10: box [4.0, 2.0, 10.0, -1.0] has a",
    ),
    "box outside": (_set("bbox", [40.0, 2.0, 20.0, 10.0]), 1, "lies outside the 32x48 image"),
    "polygon outside": (
        _set("segmentation", [[4.0, 2.0, 60.0, 2.0, 60.0, 12.0]]),
        1,
        "polygon mask lies outside the 32x48 image",
    ),
    "rle of another size": (
        _set("segmentation", coco_fakes.compressed_rle(np.zeros((16, 48), np.uint8)), 3),
        2,
        "RLE mask of size [16, 48] does not match the 32x48 image",
    ),
    "short uncompressed rle": (_set("segmentation", {"size": [32, 48], "counts": [5, 5]}, 1), 1, "sum to 10"),
    "unknown category": (_set("category_id", 5), 1, "unknown category id 5"),
    "no segmentation": (_set("segmentation", None), 1, "no 'segmentation'"),
}


@pytest.mark.parametrize("case", sorted(BAD_ANNOTATIONS))
def test_bad_annotations_name_the_image_file_and_id(tmp_path, case):
    change, image_id, reason = BAD_ANNOTATIONS[case]
    ann, images = _break(tmp_path, change)
    with pytest.raises(DatasetError) as error:
        CocoInstanceDataset(ann, images)
    message = str(error.value)
    assert str(ann) in message and f"(image id {image_id})" in message and reason in message
    assert f"{image_id:06d}.png" in message

    lenient = CocoInstanceDataset(ann, images, strict=False)  # the image is left out, the rest is usable
    assert image_id not in lenient.image_ids and len(lenient) == 2
    assert [(file.endswith(f"{image_id:06d}.png"), i) for file, i, _ in lenient.problems] == [
        (True, image_id)
    ]


def test_zero_size_boxes_are_dropped_saying_so_or_refused(tmp_path, caplog):
    """As instances_train2017.json's two boxes of height 0: left out of the targets with a warning naming
    the file and image id, or an error with degenerate_boxes="error"."""
    ann, images = _break(tmp_path, _set("bbox", [4.0, 2.0, 10.0, 0.0]))
    with caplog.at_level("WARNING", logger="ccnet.data.coco"):
        dataset = CocoInstanceDataset(ann, images)
    assert "1 annotations with a zero-size box left out" in caplog.text and "(image id 1)" in caplog.text
    assert len(dataset) == 3 and dataset[0][1]["labels"].tolist() == [2]  # the dog only
    ((file, image_id, reason),) = dataset.dropped
    assert (
        file.endswith("000001.png")
        and image_id == 1
        and reason.startswith("annotation id 10: degenerate box")
    )
    assert len(dataset.coco.anns) == 4  # the ground truth is the file's, as the official evaluation's
    with pytest.raises(DatasetError, match=r"000001.png \(image id 1\): annotation id 10: degenerate box"):
        CocoInstanceDataset(ann, images, degenerate_boxes="error")
    report = check_coco(ann_file=ann, image_dir=images, progress=False)
    assert report.ok and len(report.dropped) == 1 and report.instances == 2
    assert "zero-size box" in format_coco_report(report)


def test_malformed_entries_are_refused(tmp_path):
    data = coco_fakes.annotations()
    del data["annotations"][2]["id"]
    ann, images = _write(tmp_path, data)
    with pytest.raises(DatasetError, match=r"annotation #2 needs an 'id', an 'image_id' and a 'category_id'"):
        CocoInstanceDataset(ann, images)
    data = coco_fakes.annotations()
    data["annotations"][1]["id"] = 10
    ann.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"annotation ids \[10\] appear more than once"):
        CocoInstanceDataset(ann, images)
    data["images"][0] = "000001.png"
    ann.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"image #0 is not an object"):
        CocoInstanceDataset(ann, images)


def test_bad_json_and_missing_files(tmp_path):
    ann, images = _write(tmp_path, coco_fakes.annotations())
    ann.write_text('{"images": [1, 2,]}')
    with pytest.raises(DatasetError, match=rf"annotation file {ann} is not valid JSON: line 1 column 18"):
        CocoInstanceDataset(ann, images)
    ann.write_text('{"images": []}')
    with pytest.raises(DatasetError, match="no 'categories' list"):
        CocoInstanceDataset(ann, images)

    ann, images = _write(tmp_path, coco_fakes.annotations())
    (images / "000002.png").unlink()
    with pytest.raises(DatasetError, match=r"000002.png \(image id 2\): image file does not exist"):
        CocoInstanceDataset(ann, images)
    with pytest.raises(DatasetError, match=r"image folder .*nowhere does not exist"):
        CocoInstanceDataset(ann, tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"instances_val2017.json does not exist \(expected annotations/"):
        coco_dataset(tmp_path, "val")


def test_errors_found_when_decoding_name_the_file_and_id(tmp_path):
    data = coco_fakes.annotations()
    data["annotations"][3]["segmentation"]["counts"] = "not an RLE string \x7f"
    ann, images = _write(tmp_path, data)
    dataset = CocoInstanceDataset(ann, images)
    with pytest.raises(
        DatasetError, match=r"000002.png \(image id 2\): annotation id 20: mask cannot be decoded"
    ):
        dataset[1]
    (images / "000001.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"image id 1: image .*000001.png cannot be decoded"):
        dataset[0]
    from PIL import Image

    Image.fromarray(np.zeros((20, 48, 3), np.uint8)).save(images / "000003.png")
    with pytest.raises(DatasetError, match=r"000003.png \(image id 3\) is 20x48, but the annotation file"):
        dataset[2]


# ---------------------------------------------------------------------------------------------------------
# ccnet data check coco


def test_check_counts_a_clean_copy(coco_root):
    report = check_coco(coco_root, "val", progress=False)
    assert report.ok and report.error is None
    assert (report.images_listed, report.images_found, report.checked) == (3, 3, 3)
    assert (report.instances, report.crowd, report.empty_images) == (3, 1, 1)
    assert report.sizes == {(32, 48): 3} and report.per_class == {1: 1, 2: 1, 3: 1}
    text = format_coco_report(report)
    assert "2 dog" in text and "crowd regions" in text and text.endswith("OK")


def test_check_collects_every_problem(tmp_path):
    data = coco_fakes.annotations()
    data["annotations"][0]["bbox"] = [4.0, 2.0, 10.0, -1.0]
    ann, images = _write(tmp_path, data)
    (images / "000003.png").write_bytes(b"x")
    report = check_coco(ann_file=ann, image_dir=images, progress=False)
    assert not report.ok and report.checked == 2
    problems = {(file.rsplit("/", 1)[-1], image_id): reason for file, image_id, reason in report.bad}
    assert (
        "negative width" in problems[("000001.png", 1)] and "cannot be decoded" in problems[("000003.png", 3)]
    )
    assert report.summary().startswith(f"{ann}: 2 problems, first ")


def test_cli_check_coco(coco_root, tmp_path, capsys):
    assert _cli(["check", "coco", str(coco_root), "--split", "val", "--no-progress"]) == 0
    out = capsys.readouterr().out
    rows = dict(line.rsplit(None, 1) for line in out.splitlines() if len(line.split()) >= 2)
    assert rows["images listed"] == "3" and rows["instances"] == "3" and rows["crowd regions"] == "1"
    assert out.rstrip().endswith("OK")

    ann, images = coco_root / "annotations" / "instances_val2017.json", coco_root / "val2017"
    assert _cli(["check", "coco", "--ann", str(ann), "--images", str(images), "--no-progress"]) == 0
    data = json.loads(ann.read_text())
    data["annotations"][1]["bbox"] = [20.0, 16.0, 30.0, 12.0]
    ann.write_text(json.dumps(data))
    capsys.readouterr()
    assert _cli(["check", "coco", "--ann", str(ann), "--images", str(images), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert (
        "000001.png (image id 1): annotation id 11: box [20.0, 16.0, 30.0, 12.0] lies outside" in captured.out
    )
    assert "FAILED" in captured.out and "1 problems, first" in captured.err

    assert _cli(["check", "coco", "--ann", str(ann), "--no-progress"]) == 2
    assert _cli(["check", "coco", "--no-progress"]) == 2
    relative = ["--ann", "annotations/instances_val2017.json", "--images", "val2017", "--no-progress"]
    assert _cli(["check", "coco", str(coco_root), *relative]) == 1  # the same (now broken) file, found
    assert "annotation id 11: box [20.0, 16.0, 30.0, 12.0] lies outside" in capsys.readouterr().out
    assert _cli(["check", "cityscapes", str(tmp_path), "--ann", str(ann), "--no-progress"]) == 2
    assert _cli(["check", "coco", str(tmp_path / "none"), "--no-progress"]) == 1
    assert "COCO root" in capsys.readouterr().err
