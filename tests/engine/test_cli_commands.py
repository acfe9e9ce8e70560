"""The train / eval / predict commands through ``ccnet.cli.main`` (registered in-memory for the test)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import ccnet.cli
from ccnet.data import get_dataset
from ccnet.engine.evaluate import raw_pair, submission_labels

from .conftest import TINY


@pytest.fixture(autouse=True)
def commands(monkeypatch):
    registered = dict(ccnet.cli.COMMANDS)
    registered.setdefault("train", ("ccnet.cli.train", "train a model"))
    registered.setdefault("eval", ("ccnet.cli.eval", "evaluate a model"))
    registered.setdefault("predict", ("ccnet.cli.predict", "segment images"))
    monkeypatch.setattr(ccnet.cli, "COMMANDS", registered)


def test_train_config_errors_name_the_key(capsys):
    assert ccnet.cli.main(["train", "optim.lrr=0.1"]) == 2
    assert "unknown config key 'optim.lrr'; valid keys in 'optim'" in capsys.readouterr().err
    assert ccnet.cli.main(["train", "train.max_iters=many"]) == 2
    assert "train.max_iters: expected an integer, got 'many'" in capsys.readouterr().err
    assert ccnet.cli.main(["train", "no-such-config"]) == 2
    assert "neither a file nor a known config" in capsys.readouterr().err


def test_train_prints_the_resolved_config(capsys):
    assert ccnet.cli.main(["train", "--print-config", "train.max_iters=5", "model.recurrence=1"]) == 0
    out = capsys.readouterr().out
    assert "max_iters: 5" in out and "recurrence: 1" in out and "name: ccnet_tiny" in out


def test_train_runs_and_prints_the_final_miou(tmp_path, capsys):
    work_dir = tmp_path / "run"
    argv = ["train", *TINY, f"train.work_dir={work_dir}", "train.max_iters=2"]
    assert ccnet.cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "final mIoU" in out and "background" in out and str(work_dir) in out
    assert ccnet.cli.main([*argv, "train.max_iters=3", "--resume"]) == 0
    assert "after 3 iterations" in capsys.readouterr().out
    assert ccnet.cli.main(argv) == 1  # the directory is taken: a clear error
    assert "already holds checkpoints" in capsys.readouterr().err


def test_eval_scores_a_run_and_writes_reports(trained_run, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["eval", "--weights", str(trained_run.weights), "--out", str(out), "--no-progress"]
    assert ccnet.cli.main(argv) == 0  # the run's config.yaml (beside the weights) gives data and protocol
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "blue" in printed
    report = json.loads((out / "metrics_val.json").read_text())
    assert report["mIoU"] == pytest.approx(trained_run.metrics.miou)  # same weights, same val set
    assert set(report["per_class"]) == {"background", "red", "green", "blue"}
    assert "| class | IoU | Acc |" in (out / "metrics_val.md").read_text()


def test_eval_backends_score_the_optimised_copy(trained_run, tmp_path, capsys):
    for backend in ("fast", "fast-bf16"):
        argv = ["eval", "--weights", str(trained_run.weights), "--out", str(tmp_path), "--no-progress"]
        assert ccnet.cli.main([*argv, "--backend", backend]) == 0
    capsys.readouterr()
    fast = json.loads((tmp_path / "metrics_val_fast.json").read_text())
    bf16 = json.loads((tmp_path / "metrics_val_fast-bf16.json").read_text())
    assert fast["backend"] == "fast" and bf16["backend"] == "fast-bf16"
    # float32 with folded BatchNorm is the same function up to rounding: the same labels, the same score
    assert fast["mIoU"] == pytest.approx(trained_run.metrics.miou, abs=1e-4)
    assert bf16["mIoU"] == pytest.approx(trained_run.metrics.miou, abs=0.05)
    with pytest.raises(SystemExit):
        ccnet.cli.main(["eval", "--weights", str(trained_run.weights), "--backend", "onnx"])
    assert "invalid choice: 'onnx'" in capsys.readouterr().err


def test_precision_benchmark_compares_variants_with_plain(trained_run, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "precision.py"
    command = [sys.executable, str(script), "--weights", str(trained_run.weights), "--limit", "8"]
    command += ["--out", str(tmp_path)]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    report = json.loads((tmp_path / "precision.json").read_text())
    rows = {row["variant"]: row for row in report["rows"]}
    assert set(rows) == {"plain", "fast_fp32", "bf16"} and report["images"] == 8
    assert report["pixels"] == 8 * 64 * 64
    assert rows["plain"]["argmax_agreement"] == 1.0 and rows["plain"]["max_prob_diff"] == 0.0
    assert rows["fast_fp32"]["argmax_agreement"] >= 0.9999 and rows["fast_fp32"]["max_prob_diff"] < 1e-4
    assert 0.9 < rows["bf16"]["argmax_agreement"] <= 1.0 and rows["bf16"]["max_prob_diff"] > 0
    assert "| bf16 |" in (tmp_path / "precision.md").read_text()


def test_eval_protocol_options_reach_the_segmenter(trained_run, tmp_path, capsys):
    protocol = [
        "eval.mode=slide",
        "eval.crop_size=[32, 32]",
        "eval.stride=[16, 16]",
        "eval.scales=[0.75, 1.0]",
        "eval.flip=true",
    ]
    argv = ["eval", "--weights", str(trained_run.weights), "--out", str(tmp_path), "--no-progress", *protocol]
    assert ccnet.cli.main(argv) == 0
    report = json.loads((tmp_path / "metrics_val.json").read_text())
    assert (
        report["eval"]["mode"] == "slide"
        and report["eval"]["scales"] == [0.75, 1.0]
        and report["eval"]["flip"]
    )
    assert report["pixels"] == 8 * 64 * 64


def test_eval_format_only_writes_one_png_per_image(trained_run, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["eval", "--weights", str(trained_run.checkpoint), "--out", str(out), "--format-only"]
    assert ccnet.cli.main([*argv, "--no-progress"]) == 0
    files = sorted((out / "format_val").glob("*.png"))
    assert len(files) == 8 and files[0].name == "000000.png"
    with Image.open(files[0]) as image:
        assert image.mode == "P" and image.size == (64, 64)
        assert set(np.unique(np.asarray(image))) <= {0, 1, 2, 3}


def test_eval_errors(tmp_path, capsys):
    assert ccnet.cli.main(["eval", "--weights", str(tmp_path / "missing.safetensors")]) == 2
    assert "weights file not found" in capsys.readouterr().err
    assert ccnet.cli.main(["eval"]) == 2
    assert "--weights is required" in capsys.readouterr().err
    # a zoo name stands for weights, model and protocol; without data.root the dataset fails (before any
    # download)
    assert ccnet.cli.main(["eval", "mmseg:ccnet_r50-d8_512x1024_40k_cityscapes"]) == 2
    assert "needs root=" in capsys.readouterr().err


def test_submission_labels():
    train_ids = np.array([[0, 18], [10, 2]])
    assert submission_labels(train_ids, "cityscapes").tolist() == [[7, 33], [23, 11]]
    assert submission_labels(train_ids, "ade20k").tolist() == [[1, 19], [11, 3]]
    assert submission_labels(train_ids, "voc").tolist() == train_ids.tolist()


def test_predict_writes_labels_and_overlays_and_reports_bad_inputs(trained_run, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    dataset = get_dataset(split="test", length=2, transforms=raw_pair)
    for i in range(2):
        Image.fromarray(dataset[i]["image"].permute(1, 2, 0).numpy()).save(images / f"img{i}.png")
    (images / "broken.png").write_bytes(b"not a png")
    extra = tmp_path / "more"
    extra.mkdir()
    Image.fromarray(np.zeros((40, 50, 3), dtype=np.uint8)).save(extra / "dark.jpg")
    out = tmp_path / "out"
    argv = [
        "predict",
        "--weights",
        str(trained_run.weights),
        str(images),
        str(extra / "*.jpg"),
        str(tmp_path / "nothing.png"),
        "--out",
        str(out),
        "--no-progress",
    ]
    assert ccnet.cli.main(argv) == 1  # some inputs failed ...
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "nothing.png" in captured.err
    assert "wrote 3 label maps" in captured.out
    # ... and the others were written: palette labels at the image size, overlays
    for stem, size in (("img0", (64, 64)), ("img1", (64, 64)), ("dark", (50, 40))):
        with Image.open(out / f"{stem}.png") as label:
            assert label.mode == "P" and label.size == size
            assert set(np.unique(np.asarray(label))) <= {0, 1, 2, 3}
            assert label.getpalette()[3:6] == [220, 40, 40]  # "red" in the context palette
        with Image.open(out / f"{stem}_overlay.png") as overlay:
            assert overlay.mode == "RGB" and overlay.size == size
    good = ["predict", "--weights", str(trained_run.weights), str(extra), "--out", str(out), "--no-progress"]
    assert ccnet.cli.main(good) == 0
