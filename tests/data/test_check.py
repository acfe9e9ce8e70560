"""Dataset validation (ccnet.data.check) and the `ccnet data check` command."""

from __future__ import annotations

import argparse

import numpy as np

import ccnet.cli.data
from ccnet.data import check_dataset, format_report
from tests.data.fakes import CITYSCAPES_FRAMES, stripes, write_label


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    ccnet.cli.data.add_arguments(parser)
    return ccnet.cli.data.run(parser.parse_args(argv))


def test_clean_copy(cityscapes_root):
    report = check_dataset("cityscapes", cityscapes_root, "val", progress=False)
    assert report.ok and report.error is None
    assert (report.num_samples, report.found_images, report.found_labels, report.checked) == (3, 3, 3, 3)
    assert report.sizes == {(32, 64): 3}
    # 3 images x 8 stripes of 32x8 = 256 px; the trainIds per stripe are in tests/data/fakes.py
    expected = np.zeros(256, dtype=np.int64)
    for train_id in [0, 1, 13, 18, 255, 255, 255, 10, *range(2, 10), 11, 12, 14, 15, 16, 17, 255, 255]:
        expected[train_id] += 256
    np.testing.assert_array_equal(report.histogram, expected)


def test_bad_files_are_collected_not_raised(cityscapes_root):
    gt = cityscapes_root / "gtFine" / "val"
    write_label(gt / f"{CITYSCAPES_FRAMES[0]}_gtFine_labelIds.png", stripes([7, 40]))  # bad values
    (gt / f"{CITYSCAPES_FRAMES[1]}_gtFine_labelIds.png").unlink()  # image without label
    report = check_dataset("cityscapes", cityscapes_root, "val", progress=False)
    assert not report.ok
    assert report.found_images == 3 and report.found_labels == 2 and report.checked == 2
    reasons = {path.rsplit("/", 1)[-1]: reason for path, reason in report.bad_files}
    assert reasons["aachen_000001_000019_leftImg8bit.png"].startswith("image has no label")
    assert "values [40] outside" in reasons["aachen_000000_000019_leftImg8bit.png"]
    assert report.sizes == {(32, 64): 1}


def test_report_table(cityscapes_root):
    text = format_report(check_dataset("cityscapes", cityscapes_root, "val", progress=False))
    assert "images found" in text and "32x64" in text
    assert "13 car" in text and "255 ignore" in text and text.endswith("OK")


def test_cli_exit_codes_and_summary(cityscapes_root, capsys):
    assert _cli(["check", "cityscapes", str(cityscapes_root), "--split", "val", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "dataset cityscapes  split val" in out and "paired samples" in out

    image = cityscapes_root / "leftImg8bit" / "val" / "aachen" / "aachen_000000_000019_leftImg8bit.png"
    image.write_bytes(b"x")
    assert _cli(["check", "cityscapes", str(cityscapes_root), "--split", "val", "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "aachen_000000_000019_leftImg8bit.png" in out and "cannot be decoded" in out and "FAILED" in out


def test_cli_reports_a_missing_layout(tmp_path, capsys):
    assert _cli(["check", "ade20k", str(tmp_path), "--split", "val", "--no-progress"]) == 1
    assert "ERROR: ade20k: no images matching images/validation/*.jpg" in capsys.readouterr().out


def test_cli_checks_the_builtin_dataset_with_workers(capsys):
    assert (
        _cli(["check", "context", "--split", "val", "--limit", "6", "--workers", "2", "--no-progress"]) == 0
    )
    out = capsys.readouterr().out
    rows = dict(line.rsplit(None, 1) for line in out.splitlines() if len(line.split()) >= 2)
    assert rows["samples checked"] == "6" and rows["bad files"] == "0" and rows["64x64"] == "6"
    assert "1 red" in out and "3 blue" in out


def test_cli_list(capsys):
    assert _cli(["list"]) == 0
    out = capsys.readouterr().out
    rows = dict(line.split(None, 1) for line in out.splitlines())
    assert rows["cityscapes"] == "19 classes, crop 512x1024" and rows["context"] == "4 classes, crop 64x64"
    assert rows["folder"] == "classes from ROOT/meta.yaml"
