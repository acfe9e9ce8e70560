"""Training instance models (Mask R-CNN) with the one training loop on the built-in instance task: run
files and COCOeval validation, every loss term logged, resume equality, bf16 autocast, and start-up
errors."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import torch
from PIL import Image

import ccnet.cli
from ccnet.config import ConfigError, load_config
from ccnet.engine.coco_eval import InstanceMetrics
from ccnet.engine.train import train
from ccnet.models import read_weights

TINY_INSTANCE = [
    "data.options.length=8",
    "data.val_options.length=2",
    "data.num_workers=0",
    "data.min_size=[64]",
    "data.max_size=64",
    "train.batch_size=2",
    "train.num_threads=1",
    "train.progress=false",
    "train.log_interval=1",
    "optim.milestones=[3]",
    "optim.warmup_iters=2",
]


def meta_classes(meta):
    return json.loads(meta["classes"]) if "classes" in meta else []


def _config(work_dir, *extra):
    return load_config("instance", [*TINY_INSTANCE, f"train.work_dir={work_dir}", *extra])


def test_instance_run_validates_with_cocoeval_and_logs_every_loss_term(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ccnet.engine.train")
    config = _config(
        tmp_path / "run", "train.max_iters=2", "train.val_interval=1", "train.checkpoint_interval=2"
    )
    result = train(config)
    assert isinstance(result.metrics, InstanceMetrics) and result.metrics.num_images == 2
    assert result.best_miou is not None and (
        result.best_miou >= result.metrics.mask_ap or math.isnan(result.metrics.mask_ap)
    )
    files = {p.name for p in result.work_dir.iterdir()}
    assert {
        "config.yaml",
        "metrics.json",
        "metrics.md",
        "model.safetensors",
        "best.pt",
        "iter_0000002.pt",
    } <= files
    saved = json.loads((result.work_dir / "metrics.json").read_text())
    assert set(saved["segm"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    logged = caplog.text
    for term in ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"):
        assert term in logged
    # the data's detector size reached the model, and the exported weights rebuild it
    state, meta = read_weights(result.weights)
    assert meta["arch"] == "maskrcnn_tiny_rcca" and json.loads(meta["model_overrides"])["min_size"] == 64
    assert result.model.transform.min_size == (64,) and result.model.transform.max_size == 64
    assert "backbone.body.layer3.context.module.cca.gamma" in state

    # ccnet eval scores the run's weights with COCOeval (its config.yaml names the data) and writes the
    # detections in COCO's results format
    assert ccnet.cli.main(["eval", "--weights", str(result.weights), "--no-progress"]) == 0
    scores = json.loads((result.work_dir / "metrics_val.json").read_text())
    assert scores["num_images"] == 2 and scores["segm"] is not None
    detections = json.loads((result.work_dir / "detections_val.json").read_text())
    assert all({"image_id", "category_id", "bbox", "score", "segmentation"} <= set(d) for d in detections)

    # ccnet predict draws the instances and writes their detections; semantic-only options are refused
    image = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8)).save(image)
    command = ["predict", str(image), "--weights", str(result.weights), "--out", str(tmp_path / "pred")]
    assert ccnet.cli.main([*command, "--score-threshold", "0", "--no-progress"]) == 0
    record = json.loads((tmp_path / "pred" / "scene.json").read_text())
    assert (record["height"], record["width"]) == (48, 80)
    assert record["detections"] and all(d["class"] in meta_classes(meta) for d in record["detections"])
    with Image.open(tmp_path / "pred" / "scene_overlay.png") as overlay:
        assert overlay.size == (80, 48)
    assert ccnet.cli.main([*command, "--flip"]) == 2


def test_resumed_instance_run_ends_with_the_same_weights(tmp_path):
    extra = (
        "train.max_iters=4",
        "train.checkpoint_interval=2",
        "train.deterministic=true",
        "train.val_interval=0",
    )
    reference = read_weights(train(_config(tmp_path / "reference", *extra)).weights)[0]
    first = _config(tmp_path / "resumed", *extra[1:], "train.max_iters=2")
    train(first)
    resumed = train(_config(tmp_path / "resumed", *extra), resume=True)
    assert resumed.iterations == 4
    weights = read_weights(resumed.weights)[0]
    for key, value in reference.items():
        torch.testing.assert_close(weights[key], value, rtol=0, atol=0, msg=key)


def test_bf16_autocast_trains(tmp_path):
    result = train(
        _config(tmp_path / "bf16", "train.max_iters=1", "train.amp=bf16", "data.val_options.length=1")
    )
    state = read_weights(result.weights)[0]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.dataset=context"], "is an instance model but data.dataset='context'"),
        (["model.name=ccnet_tiny"], "is a semantic segmentation model"),
        (["loss.ccl.enabled=true"], "category consistent loss"),
        (["model.name=maskrcnn_tinyy"], "did you mean"),
    ],
)
def test_start_up_errors_name_the_key(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train(_config(tmp_path / "bad", "train.max_iters=1", *overrides))


def test_ablation_section_reports_means_and_the_per_seed_check():
    from ccnet.reproduce.instance_ablation import VARIANTS, ablation_markdown

    values = {"Mask R-CNN": (0.30, 0.40), "+ non-local": (0.35, 0.35), "+ RCCA (R=2)": (0.50, 0.20)}
    rows = [
        {"variant": v, "seed": seed, "mask_ap": values[v][i], "box_ap": 0.5}
        for v in VARIANTS
        for i, seed in enumerate((0, 1))
    ]
    checks = [
        {"seed": s, "holds": values["+ RCCA (R=2)"][i] > values["Mask R-CNN"][i]}
        for i, s in enumerate((0, 1))
    ]
    text = ablation_markdown(
        {"seeds": [0, 1], "overrides": [], "rows": rows, "checks": checks, "picture": "p.png"}
    )
    assert "| Mask R-CNN | 35.0 | 30.0 / 40.0 | 50.0 |" in text
    assert "| + RCCA (R=2) | 35.0 | 50.0 / 20.0 | 50.0 |" in text
    assert "RCCA > baseline (mask AP) on 1 of 2 seeds." in text and "(p.png)" in text
