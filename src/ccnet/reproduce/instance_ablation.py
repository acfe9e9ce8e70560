"""The instance-segmentation ablation on the built-in instance task: Mask R-CNN baseline vs + non-local vs
+ RCCA (the TPAMI paper's COCO rows, in miniature), several seeds, mask and box AP by COCOeval, and a PNG of
predictions.

On the task (:mod:`ccnet.data.instance_task`) an instance's class is the colour of a marker far away, so a
detector finds the objects from local evidence but needs context to name them: the baseline's mask AP is
capped by guessing the class, a context module lifts it. Run::

    python -m ccnet.reproduce.instance_ablation --out runs/reproduce            # 3 seeds x 3 models
    python -m ccnet.reproduce.instance_ablation --out runs/reproduce --quick    # 1 seed, short runs

It writes ``instance.json``, ``instance.md`` and ``instance_predictions.png`` into ``--out`` and refreshes
``report.md`` there (:func:`ccnet.reproduce.report.write_report`). Each run is the shipped ``instance``
recipe with ``model.name`` and ``train.seed`` set (about 5 minutes per run on 2 idle CPU cores).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["VARIANTS", "ablation_markdown", "main", "prediction_grid", "run_ablation"]

# label -> registered model
VARIANTS = {
    "Mask R-CNN": "maskrcnn_tiny",
    "+ non-local": "maskrcnn_tiny_nonlocal",
    "+ RCCA (R=2)": "maskrcnn_tiny_rcca",
}
PICTURE_IMAGES = 4
PICTURE_SCALE = 4  # the task's 64x64 images are too small to read labels on


def run_ablation(
    out: str | Path,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    overrides: Sequence[str] = (),
    progress: bool = False,
) -> dict[str, Any]:
    """Train every variant with every seed (the ``instance`` recipe + ``overrides``), then write the
    section files. Returns the JSON-ready result (``rows``: one per run; ``checks``: RCCA > baseline per
    seed)."""
    from ccnet.config import load_config
    from ccnet.engine.train import train

    out = Path(out)
    rows, models = [], {}
    for label, name in VARIANTS.items():
        for seed in seeds:
            config = load_config(
                "instance",
                [
                    f"model.name={name}",
                    f"train.seed={seed}",
                    f"train.work_dir={out / 'instance_runs' / f'{name}_seed{seed}'}",
                    f"train.progress={str(progress).lower()}",
                    *overrides,
                ],
            )
            result = train(config)
            metrics = result.metrics
            rows.append(
                {
                    "variant": label,
                    "model": name,
                    "seed": seed,
                    "mask_ap": metrics.mask_ap,
                    "box_ap": metrics.box_ap,
                    "mask_ap50": metrics.segm["AP50"] if metrics.segm else math.nan,
                    "weights": str(result.weights),
                }
            )
            if seed == seeds[0]:
                models[label] = result.model.eval()
    checks = [
        {
            "seed": seed,
            "rcca": _row(rows, "+ RCCA (R=2)", seed)["mask_ap"],
            "baseline": _row(rows, "Mask R-CNN", seed)["mask_ap"],
        }
        for seed in seeds
    ]
    for check in checks:
        check["holds"] = bool(check["rcca"] > check["baseline"])
    picture = prediction_grid(models, out / "instance_predictions.png")
    result = {
        "seeds": list(seeds),
        "overrides": list(overrides),
        "rows": rows,
        "checks": checks,
        "picture": picture.name,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "instance.json").write_text(json.dumps(result, indent=2, default=_nan_as_none) + "\n")
    (out / "instance.md").write_text(ablation_markdown(result))
    from ccnet.reproduce.report import write_report

    write_report(out)
    return result


def _nan_as_none(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else str(value)


def _row(rows: list[dict[str, Any]], variant: str, seed: int) -> dict[str, Any]:
    return next(r for r in rows if r["variant"] == variant and r["seed"] == seed)


def ablation_markdown(result: dict[str, Any]) -> str:
    """The ``instance.md`` section: per-variant mask / box AP (mean and per seed), the per-seed check and
    the picture."""
    from ccnet.reproduce.report import markdown_table

    seeds = result["seeds"]
    table = []
    for variant in VARIANTS:
        runs = [_row(result["rows"], variant, seed) for seed in seeds]
        mask = [r["mask_ap"] for r in runs]
        box = [r["box_ap"] for r in runs]
        table.append(
            [
                variant,
                f"{100 * sum(mask) / len(mask):.1f}",
                " / ".join(f"{100 * v:.1f}" for v in mask),
                f"{100 * sum(box) / len(box):.1f}",
            ]
        )
    held = sum(c["holds"] for c in result["checks"])
    lines = [
        "## `python -m ccnet.reproduce.instance_ablation`: Mask R-CNN + context, built-in instance task",
        "",
        "Each instance's class is the colour of a marker far away (`ccnet.data.instance_task`); the "
        "paper's COCO rows (baseline, + NL, + RCCA) as three tiny Mask R-CNNs, AP by COCOeval on the "
        f"validation images, seeds {seeds}"
        + (f", overrides {result['overrides']}" if result["overrides"] else "")
        + ".",
        "",
        markdown_table(["model", "mask AP (mean)", "mask AP per seed", "box AP (mean)"], table),
        "",
        f"RCCA > baseline (mask AP) on {held} of {len(seeds)} seeds.",
        "",
        f"![rows: ground truth, then seed {seeds[0]}'s baseline, + NL, + RCCA]({result['picture']})",
        "",
    ]
    return "\n".join(lines)


def prediction_grid(models: dict[str, Any], path: Path, *, count: int = PICTURE_IMAGES) -> Path:
    """A PNG: the ground truth, then one row per model, on ``count`` validation images of the task;
    detections scoring >= 0.5 drawn (mask, box, class and score), the images enlarged ``PICTURE_SCALE``
    times."""
    import numpy as np
    import torch
    from PIL import Image

    from ccnet.data.instance_task import InstanceTaskDataset
    from ccnet.engine.instance_predict import draw_instances

    dataset = InstanceTaskDataset("val", length=count, seed=1234)

    def ground_truth(image: Any) -> dict[str, Any]:
        _, target = dataset[int(image)]
        labels = target["labels"]
        masks = target["masks"].as_subclass(torch.Tensor)[:, None].float()
        return {
            "boxes": target["boxes"].as_subclass(torch.Tensor),
            "labels": labels,
            "scores": torch.ones(len(labels)),
            "masks": masks,
        }

    rows = []
    for model in [None, *models.values()]:  # the first row: the ground truth
        tiles = []
        for index in range(count):
            image, _ = dataset[index]
            with torch.inference_mode():
                prediction = (
                    ground_truth(index) if model is None else model([image.as_subclass(torch.Tensor)])[0]
                )
            big = image.as_subclass(torch.Tensor).repeat_interleave(PICTURE_SCALE, 1)
            big = big.repeat_interleave(PICTURE_SCALE, 2)
            scaled = {
                "boxes": prediction["boxes"] * PICTURE_SCALE,
                "labels": prediction["labels"],
                "scores": prediction["scores"],
                "masks": prediction["masks"]
                .repeat_interleave(PICTURE_SCALE, -2)
                .repeat_interleave(PICTURE_SCALE, -1),
            }
            pixels = (big * 255).round().to(torch.uint8)
            tiles.append(np.asarray(draw_instances(pixels, scaled, dataset.classes, score_threshold=0.5)))
        rows.append(np.concatenate(tiles, axis=1))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ccnet.reproduce.instance_ablation", description=__doc__)
    parser.add_argument("--out", default="runs/reproduce", help="report folder (default: runs/reproduce)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="seed 0 only, 300 iterations (a smoke run)")
    parser.add_argument("overrides", nargs="*", help="config overrides for every run (key=value)")
    args = parser.parse_args(argv)
    seeds, overrides = args.seeds, list(args.overrides)
    if args.quick:
        seeds = seeds[:1]
        overrides = ["train.max_iters=300", "optim.milestones=[250]", "train.val_interval=0", *overrides]
    from ccnet.cli.common import setup_logging

    setup_logging()
    result = run_ablation(args.out, seeds=seeds, overrides=overrides, progress=True)
    print(ablation_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
