"""The recurrence ablation on the built-in context task, with pictures (``ccnet demo``).

Six variants differ ONLY in the context module or the loss of the tiny network (same backbone and head, same
data, same seeds, same budget): no context (the FCN twin), one non-local block, RCCA R=1, RCCA R=2, and RCCA
R=2 + the category consistent loss at the paper's weights and at 1/100 of them. Each (variant, seed) is one
:func:`ccnet.engine.train.train` run in its own process with one thread (two in parallel by default).

Why the ordering is structural (see :mod:`ccnet.data.synthetic`): every object's class is the colour of one
marker elsewhere in the image, and the tiny backbone's receptive field (15 px) does not reach it. Without a
context module objects are at chance; one criss-cross hop (R=1) reaches the marker only from pixels whose row
or column passes near it; two hops (R=2) reach it from everywhere. Besides mIoU the demo therefore measures
the object-pixel accuracy by *axis distance* (:mod:`ccnet.reproduce.context_task`) and on an ``off_axis``
validation set (no object shares a row/column band with the marker).

Pictures (:mod:`ccnet.reproduce.figures`): validation images with the ground truth and every variant's
prediction side by side, and the paper's attention figure for the trained R=2 model: for one pixel the
criss-cross weights of loop 1 (a cross) and the effective reach after loop 2 (the whole image).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ccnet.reproduce.context_task import DISTANCE_BINS, axis_distance, object_accuracy
from ccnet.reproduce.demo_report import demo_markdown
from ccnet.reproduce.figures import attention_figure, prediction_figure
from ccnet.reproduce.report import environment, write_report
from ccnet.reproduce.runs import run_overrides, run_tasks
from ccnet.reproduce.verdicts import compare

__all__ = [
    "PAPER_ABLATION",
    "VARIANTS",
    "DemoSettings",
    "Variant",
    "build_trained",
    "ordering_checks",
    "run_demo",
    "summarize",
    "train_variant",
]

PAPER_ABLATION = {  # Cityscapes val mIoU of the paper's ablation, for the report
    "none": 75.1,
    "nonlocal": 79.1,
    "rcca_r1": 78.0,
    "rcca_r2": 79.8,
    "rcca_r2_ccl": 80.5,
    "rcca_r2_ccl_low": 80.5,
}


@dataclass(frozen=True)
class Variant:
    """One arm of the ablation: a tiny model name, its recurrence, whether the CCL is on and the weight of
    its variance and distance terms (None: the paper's 1)."""

    key: str
    label: str
    model: str
    recurrence: int | None = None
    ccl: bool = False
    ccl_weight: float | None = None


VARIANTS: tuple[Variant, ...] = (
    Variant("none", "no context (FCN twin)", "fcn_tiny"),
    Variant("nonlocal", "non-local block", "nonlocal_tiny"),
    Variant("rcca_r1", "RCCA R=1", "ccnet_tiny", 1),
    Variant("rcca_r2", "RCCA R=2", "ccnet_tiny", 2),
    Variant("rcca_r2_ccl", "RCCA R=2 + CCL (paper weights)", "ccnet_tiny", 2, ccl=True),
    Variant("rcca_r2_ccl_low", "RCCA R=2 + CCL (a=b=0.01)", "ccnet_tiny", 2, ccl=True, ccl_weight=0.01),
)


@dataclass
class DemoSettings:
    """Budget and data of the ablation (identical for every variant)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    max_iters: int = 1500
    batch_size: int = 8
    train_length: int = 12000
    val_length: int = 256
    image_size: int = 64
    marker_placement: str = "anywhere"  # of the training and the main validation set
    workers: int = 2  # parallel training processes (1 thread each); 0 = in this process
    num_pictures: int = 4
    variants: tuple[str, ...] = field(default_factory=lambda: tuple(v.key for v in VARIANTS))

    @classmethod
    def quick(cls) -> DemoSettings:
        """One seed, 750 iterations (RCCA needs about that many to learn to use the marker; with much fewer
        every variant but non-local is still at chance), smaller validation sets."""
        return cls(seeds=(0,), max_iters=750, train_length=6000, val_length=128)

    def plain(self) -> dict[str, Any]:
        """The settings as JSON values (tuples as lists), as stored in ``demo.json`` and sent to workers."""
        return {**asdict(self), "seeds": list(self.seeds), "variants": list(self.variants)}


# --- one training run (in a worker process) -------------------------------------------------------------
def _overrides(variant: Variant, seed: int, settings: DemoSettings, work_dir: Path) -> list[str]:
    recurrence = "null" if variant.recurrence is None else str(variant.recurrence)
    return [
        f"name=demo-{variant.key}-seed{seed}",
        f"model.name={variant.model}",
        f"model.recurrence={recurrence}",
        f"train.max_iters={settings.max_iters}",
        f"train.batch_size={settings.batch_size}",
        f"data.options.length={settings.train_length}",
        f"data.options.image_size={settings.image_size}",
        f"data.options.marker_placement={settings.marker_placement}",
        f"data.val_options.length={settings.val_length}",
        f"loss.ccl.enabled={'true' if variant.ccl else 'false'}",
        *run_overrides(seed, work_dir),
    ] + (
        []
        if variant.ccl_weight is None
        else [f"loss.ccl.{term}={variant.ccl_weight}" for term in ("alpha", "beta")]
    )


def _val_set(settings: DemoSettings, placement: str | None = None) -> Any:
    from ccnet.data import get_dataset

    return get_dataset(
        "context",
        split="val",
        length=settings.val_length,
        image_size=settings.image_size,
        marker_placement=placement or settings.marker_placement,
    )


def train_variant(task: dict[str, Any]) -> dict[str, Any]:
    """Train one (variant, seed) and evaluate it; runs in a worker process with one thread.

    ``task``: ``{"variant": key, "seed", "settings": DemoSettings.plain(), "work_dir"}``. Returns the row:
    mIoU / mAcc / aAcc of the final validation, object accuracy (overall, per distance bin, and on the
    off_axis set), seconds and the trained ``state_dict`` (CPU tensors, for the pictures).
    """
    from ccnet.config import load_config
    from ccnet.engine.train import train

    torch.set_num_threads(1)
    logging.getLogger("ccnet").setLevel(logging.WARNING)  # the demo reports; the runs stay quiet
    settings = DemoSettings(**{**task["settings"], "seeds": tuple(task["settings"]["seeds"])})
    variant = next(v for v in VARIANTS if v.key == task["variant"])
    config = load_config("default", _overrides(variant, task["seed"], settings, Path(task["work_dir"])))
    start = time.perf_counter()
    result = train(config)
    seconds = time.perf_counter() - start
    model = result.model.eval()
    assert result.metrics is not None
    main = object_accuracy(model, _val_set(settings))
    off_axis = object_accuracy(model, _val_set(settings, "off_axis"))
    return {
        "variant": variant.key,
        "seed": task["seed"],
        "miou": float(result.metrics.miou),
        "macc": float(result.metrics.macc),
        "aacc": float(result.metrics.aacc),
        "object_accuracy": main["object_accuracy"],
        "distance_bins": main["bins"],
        "off_axis_object_accuracy": off_axis["object_accuracy"],
        "seconds": seconds,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }


# --- statistics and the paper's ordering ---------------------------------------------------------------
def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant: mIoU mean / std (sample std, 0 for one seed) / per-seed values, object accuracies,
    accuracy per distance bin (pooled over seeds) and mean seconds per run. Keys in :data:`VARIANTS`
    order."""
    summary: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        mine = sorted((r for r in rows if r["variant"] == variant.key), key=lambda r: r["seed"])
        if not mine:
            continue
        mious = [r["miou"] for r in mine]
        bins = np.sum([np.asarray(r["distance_bins"], dtype=np.int64) for r in mine], axis=0)  # (bins, 2)
        summary[variant.key] = {
            "label": variant.label,
            "seeds": [r["seed"] for r in mine],
            "miou": mious,
            "miou_mean": statistics.fmean(mious),
            "miou_std": statistics.stdev(mious) if len(mious) > 1 else 0.0,
            "object_accuracy": statistics.fmean(r["object_accuracy"] for r in mine),
            "off_axis_object_accuracy": statistics.fmean(r["off_axis_object_accuracy"] for r in mine),
            "distance_accuracy": [float(h / c) if c else None for h, c in bins.tolist()],
            "seconds": statistics.fmean(r["seconds"] for r in mine),
        }
    return summary


def ordering_checks(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The paper's ordering claims checked on ``summary`` (see :func:`summarize`).

    Each check: ``claim``, ``low`` / ``high`` (the variants), ``paper`` (the Cityscapes numbers) and the
    result of :func:`ccnet.reproduce.verdicts.compare` (``difference``, ``margin``, ``seed_wins`` /
    ``seed_pairs``, ``verdict``). Claims whose variants were not run are left out.
    """
    claims = [
        ("none", "rcca_r1", "no context < RCCA R=1"),
        ("rcca_r1", "rcca_r2", "RCCA R=1 < RCCA R=2"),
        ("rcca_r2", "rcca_r2_ccl", "category consistent loss improves RCCA R=2 (paper weights)"),
        ("rcca_r2", "rcca_r2_ccl_low", "category consistent loss improves RCCA R=2 (a=b=0.01)"),
        ("nonlocal", "rcca_r2", "non-local block <= RCCA R=2"),
    ]
    checks = []
    for low, high, claim in claims:
        if low not in summary or high not in summary:
            continue
        paper = f"{PAPER_ABLATION[low]:.1f} -> {PAPER_ABLATION[high]:.1f}"
        checks.append(
            {"claim": claim, "low": low, "high": high, "paper": paper, **compare(summary, low, high)}
        )
    return checks


# --- pictures of the trained models --------------------------------------------------------------------
def build_trained(variant_key: str, state_dict: dict[str, Tensor]) -> nn.Module:
    """The tiny model of ``variant_key`` with trained weights, in eval mode."""
    from ccnet.data.meta import CONTEXT
    from ccnet.models import create_model

    variant = next(v for v in VARIANTS if v.key == variant_key)
    overrides = {} if variant.recurrence is None else {"recurrence": variant.recurrence}
    model = create_model(variant.model, num_classes=CONTEXT.num_classes, **overrides)
    model.load_state_dict(state_dict)
    return model.eval()


def _picture_indices(dataset: Any, count: int) -> list[int]:
    """Validation images whose objects are mostly far (>= 16 px) from the marker's row/column bands."""
    scored = []
    for i in range(min(len(dataset), 64)):
        _, label, info = dataset.generate(i)
        distance = axis_distance(*label.shape, info["marker_yx"], dataset.config.marker_size)
        objects = label > 0
        scored.append((-float(np.mean(distance[objects] >= 16)) if objects.any() else 0.0, i))
    return [i for _, i in sorted(scored)[:count]]


def _pictures(rows: list[dict[str, Any]], settings: DemoSettings, out: Path) -> dict[str, Any]:
    """``predictions.png`` and ``attention.png`` of the first seed's models; returns what the JSON keeps."""
    first_seed = settings.seeds[0]
    models = {
        key: build_trained(
            key, next(r["state_dict"] for r in rows if r["variant"] == key and r["seed"] == first_seed)
        )
        for key in settings.variants
    }
    val_set = _val_set(settings)
    indices = _picture_indices(val_set, settings.num_pictures)
    titles = {v.key: v.label.replace(" (FCN twin)", "") for v in VARIANTS}
    prediction_figure({titles[k]: m for k, m in models.items()}, val_set, indices, out / "predictions.png")
    attention_key = "rcca_r2" if "rcca_r2" in models else next((k for k in models if "rcca" in k), None)
    attention_facts: list[dict[str, Any]] = []
    if attention_key is not None:
        attention_facts = attention_figure(models[attention_key], val_set, indices[:3], out / "attention.png")
    return {"indices": indices, "attention_model": attention_key, "attention": attention_facts}


# --- the whole demo ----------------------------------------------------------------------------------
def run_demo(
    out_dir: str | os.PathLike,
    settings: DemoSettings | None = None,
    *,
    progress: bool = True,
    work_root: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Run the ablation and write ``demo.json``, ``demo.md``, ``predictions.png``, ``attention.png`` and
    ``report.md`` into ``out_dir``. Returns the JSON content (summary, checks, rows without weights).

    ``work_root``: where the training runs put their files (default: a temporary directory, deleted).
    """
    from tqdm import tqdm

    settings = settings or DemoSettings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ccnet-demo-", dir=work_root) as tmp:
        tasks = [
            {
                "variant": key,
                "seed": seed,
                "settings": settings.plain(),
                "work_dir": str(Path(tmp) / f"{key}-seed{seed}"),
            }
            for seed in settings.seeds
            for key in settings.variants
        ]
        bar = tqdm(total=len(tasks), desc="demo runs", unit="run", disable=not progress)

        def done(row: dict[str, Any]) -> None:
            bar.set_postfix_str(f"{row['variant']} seed {row['seed']}: mIoU {row['miou']:.3f}")
            bar.update(1)

        rows = run_tasks(tasks, settings.workers, done, run=train_variant)
        bar.close()
    summary = summarize(rows)
    checks = ordering_checks(summary)
    pictures = _pictures(rows, settings, out)
    result = {
        "environment": env,
        "settings": settings.plain(),
        "distance_bins": [list(b) for b in DISTANCE_BINS],
        "summary": summary,
        "checks": checks,
        "rows": [{k: v for k, v in r.items() if k != "state_dict"} for r in rows],
        "pictures": pictures,
        "seconds": time.perf_counter() - started,
    }
    (out / "demo.json").write_text(json.dumps(result, indent=2))
    quick = settings.max_iters < DemoSettings().max_iters
    (out / "demo.md").write_text(demo_markdown(result, quick=quick))
    write_report(out, env)
    return result
