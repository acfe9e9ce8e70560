"""``ccnet demo --video``: object accuracy by frame, the claims' logic and a tiny end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn

import ccnet.cli
from ccnet.data import get_dataset
from ccnet.reproduce import video_demo
from ccnet.reproduce.video_demo import VideoDemoSettings, checks, object_accuracy_by_frame, summarize


class ConstantClass(nn.Module):
    """A video model predicting class ``k`` at every pixel of every frame."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k, self.clip_length, self.frames = k, 5, "all"
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        B, T, _, H, W = x.shape
        logits = torch.zeros(B, T, 4, H, W) + self.weight
        logits[:, :, self.k] = 1.0
        return logits


def test_object_accuracy_by_frame_counts_objects_in_and_out_of_the_marker_frame():
    dataset = get_dataset("context_video", split="val", length=6, clip_length=5)
    m = dataset.config.marker_size
    hits = {"marker_frame": 0, "other_frames": 0}
    counts = {"marker_frame": 0, "other_frames": 0}
    for i in range(len(dataset)):  # by hand: a constant class-2 prediction is right on class-2 objects
        _, labels, info = dataset.generate(i)
        (my, mx), cue = info["marker_yx"], info["marker_frame"]
        for t in range(5):
            objects = labels[t] > 0
            if t == cue:
                objects[my : my + m, mx : mx + m] = False
            key = "marker_frame" if t == cue else "other_frames"
            counts[key] += int(objects.sum())
            hits[key] += int((labels[t][objects] == 2).sum())
    result = object_accuracy_by_frame(ConstantClass(2), dataset, batch_size=4)
    assert 0 < hits["other_frames"] < counts["other_frames"]  # the check can tell right from wrong
    assert result == {k: hits[k] / counts[k] for k in hits}


def _rows(values: dict[str, list[float]]) -> list[dict]:
    rows = []
    for key, mious in values.items():
        window, recurrence = int(key[1]), int(key[4])
        for seed, miou in enumerate(mious):
            rows.append(
                {
                    "variant": key,
                    "window": window,
                    "recurrence": recurrence,
                    "seed": seed,
                    "miou": miou,
                    "object_accuracy_marker_frame": 0.9,
                    "object_accuracy_other_frames": miou,
                    "seconds": 10.0,
                }
            )
    return rows


def test_claims_with_fixed_numbers():
    rows = _rows({"t1_r3": [0.45, 0.44, 0.46], "t5_r2": [0.80, 0.98, 0.78], "t5_r3": [0.96, 0.97, 0.965]})
    summary = summarize(rows, ((1, 3), (5, 2), (5, 3)))
    assert summary["t5_r3"]["miou_mean"] == np.mean([0.96, 0.97, 0.965])
    assert summary["t1_r3"]["label"] == "T=1, R=3"
    temporal, reach = checks(summary)
    assert (temporal["low"], temporal["high"]) == ("t1_r3", "t5_r3")
    assert temporal["verdict"] == "holds" and temporal["seed_wins"] == 3
    # R=2 is higher on seed 1, and the mean difference (0.112) is within 2 SE (0.127)
    assert reach["seed_wins"] == 2 and reach["verdict"] == "within noise"
    assert reach["difference"] == np.mean([0.96, 0.97, 0.965]) - np.mean([0.80, 0.98, 0.78])


def test_video_demo_end_to_end(tmp_path, monkeypatch, capsys):
    tiny = VideoDemoSettings(
        seeds=(0,), pretrain_iters=3, max_iters=3, train_length=16, val_length=4, num_pictures=1
    )
    monkeypatch.setattr(VideoDemoSettings, "quick", classmethod(lambda cls: tiny))
    registered = dict(ccnet.cli.COMMANDS)
    registered.setdefault("demo", ("ccnet.cli.demo", "demo"))
    monkeypatch.setattr(ccnet.cli, "COMMANDS", registered)
    out = tmp_path / "report"
    argv = ["demo", "--video", "--quick", "--workers", "0", "--no-progress", "--out", str(out)]
    assert ccnet.cli.main(argv) == 0
    assert "T=5 beats T=1" in capsys.readouterr().out
    result = json.loads((out / "video.json").read_text())
    assert sorted(r["variant"] for r in result["rows"]) == ["t1_r3", "t5_r2", "t5_r3"]
    assert [c["claim"].split(" beats")[0] for c in result["checks"]] == ["T=5", "R=3"]
    assert len(result["pretrained_2d"]) == 1 and result["settings"]["max_iters"] == 3
    data = (out / "video_predictions.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "![video predictions](video_predictions.png)" in report and "ccnet demo --video" in report
    assert "(not run yet: `ccnet demo --out" in report  # the other sections are announced, not faked
    assert video_demo._key(5, 3) in result["summary"]
