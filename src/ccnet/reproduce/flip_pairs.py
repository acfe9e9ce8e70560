"""Flip pairs demonstration: on a task with a left/right class pair, flip testing must swap the pair.

The built-in ``handed`` task (:class:`ccnet.data.synthetic.HandedDataset`) labels an object "left object"
or "right object" by its side of a red bar, so the mirror image of a sample swaps the two classes, as LIP's
left and right arms. A tiny CCNet is trained briefly (the training flip swaps the pair, as
:class:`ccnet.data.transforms.RandomHorizontalFlip` does for every dataset declaring ``flip_pairs``) and
scored on the validation split three ways:

- no flip testing;
- flip testing without swapping the pair (mmsegmentation's behaviour): the mirrored pass says "right" where
  the image says "left", and averaging it in pulls both classes towards a coin toss;
- flip testing with the swap (:class:`ccnet.engine.inference.Segmenter` with ``flip_pairs``).

``train_swap=False`` also trains with mmsegmentation's flip (no swap), whose labels contradict each other
on mirrored samples. Run ``python -m ccnet.reproduce.flip_pairs --iters 400`` (about a minute on a CPU per
seed); ``--seeds 0 1 2 --out docs/report`` writes the reproduction report's section (``flip_pairs.md`` and
``.json``) and regenerates ``report.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

__all__ = ["main", "run_flip_pairs_demo", "score_flip_protocols", "train_handed_model"]


def train_handed_model(
    *,
    iters: int = 400,
    batch_size: int = 8,
    lr: float = 3e-3,
    seed: int = 0,
    train_swap: bool = True,
    model_name: str = "ccnet_tiny",
    progress: bool = True,
) -> torch.nn.Module:
    """A ``model_name`` network trained ``iters`` iterations on the handed task (AdamW, poly decay), with
    random flips that swap the left/right pair (``train_swap``) or not (mmsegmentation's flip). Eval mode."""
    from ccnet.data import HandedDataset, collate
    from ccnet.data.transforms import train_transforms
    from ccnet.losses import SegmentationLoss
    from ccnet.models import create_model

    torch.manual_seed(seed)
    model = create_model(model_name, num_classes=HandedDataset.meta.num_classes)
    size = HandedDataset.meta.crop_size
    transforms = train_transforms(
        size,
        ratio_range=(1.0, 1.0),
        cat_max_ratio=1.0,
        photometric=False,
        normalization=model.preprocess,
        flip_pairs=HandedDataset.meta.flip_pairs if train_swap else (),
    )
    dataset = HandedDataset("train", length=iters * batch_size, seed=seed, transforms=transforms)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(seed),
    )
    criterion = SegmentationLoss(aux_weight=0.4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (1 - step / iters) ** 0.9)
    model.train()
    for batch in tqdm(loader, desc="train", unit="it", disable=not progress, leave=False):
        output = model(batch["image"])
        loss = criterion(output.out, output.aux, batch["mask"])["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


def score_flip_protocols(model: torch.nn.Module, *, length: int = 128, seed: int = 0) -> dict[str, Any]:
    """mIoU and per-class IoU of ``model`` on ``length`` validation samples of the handed task, without flip,
    with flip but no swap, and with flip and swap."""
    from ccnet.data import HandedDataset
    from ccnet.engine.inference import Segmenter
    from ccnet.metrics import ConfusionMatrix

    meta = HandedDataset.meta
    dataset = HandedDataset("val", length=length, seed=seed)
    samples = [dataset.generate(i) for i in range(length)]
    protocols = {
        "no flip": {"flip": False},
        "flip, no swap": {"flip": True, "flip_pairs": ()},
        "flip + swap": {"flip": True, "flip_pairs": meta.flip_pairs},
    }
    scores: dict[str, Any] = {}
    for name, options in protocols.items():
        segmenter = Segmenter(model, mode="whole", test_scale=None, batch_size=32, **options)
        matrix = ConfusionMatrix(meta.num_classes)
        predictions = segmenter.predict([image for image, _, _ in samples])
        for (_, label, _), prediction in zip(samples, predictions, strict=True):
            matrix.update(prediction, torch.from_numpy(label))
        metrics = matrix.compute()
        scores[name] = {
            "mIoU": metrics.miou,
            "IoU": dict(zip(meta.classes, metrics.iou, strict=True)),
        }
    return scores


def run_flip_pairs_demo(
    *,
    iters: int = 400,
    batch_size: int = 8,
    val_length: int = 128,
    seed: int = 0,
    train_swap: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Train (:func:`train_handed_model`) and score (:func:`score_flip_protocols`); returns the scores plus
    the settings and the training time in seconds."""
    start = time.perf_counter()
    model = train_handed_model(
        iters=iters, batch_size=batch_size, seed=seed, train_swap=train_swap, progress=progress
    )
    seconds = time.perf_counter() - start
    return {
        "settings": {"iters": iters, "batch_size": batch_size, "seed": seed, "train_swap": train_swap},
        "train_seconds": round(seconds, 1),
        "scores": score_flip_protocols(model, length=val_length, seed=seed),
    }


def format_scores(result: dict[str, Any]) -> str:
    """A small table: protocol, mIoU, IoU of "left object" and "right object" (percent)."""
    lines = [f"{'protocol':<15} {'mIoU':>6} {'left':>6} {'right':>6}"]
    for name, score in result["scores"].items():
        iou = score["IoU"]
        lines.append(
            f"{name:<15} {100 * score['mIoU']:6.2f} {100 * iou['left object']:6.2f} "
            f"{100 * iou['right object']:6.2f}"
        )
    return "\n".join(lines)


PROTOCOLS = ("no flip", "flip, no swap", "flip + swap")


def report_section(results: Sequence[dict[str, Any]]) -> str:
    """The reproduction report's section: per seed, the mIoU of each protocol and the IoU of the two
    mirrored classes (percent), and whether flip + swap beats flip without swap on every seed."""
    settings = results[0]["settings"]
    rows = []
    for result in results:
        scores = result["scores"]
        cells = [f"{100 * scores[name]['mIoU']:.2f}" for name in PROTOCOLS]
        sides = []
        for name in ("flip, no swap", "flip + swap"):
            iou = scores[name]["IoU"]
            sides.append(f"{100 * iou['left object']:.0f} / {100 * iou['right object']:.0f}")
        rows.append(f"| {result['settings']['seed']} | {' | '.join(cells)} | {' | '.join(sides)} |")
    wins = all(r["scores"]["flip + swap"]["mIoU"] > r["scores"]["flip, no swap"]["mIoU"] for r in results)
    return "\n".join(
        [
            "## Flip testing with left/right classes (`python -m ccnet.reproduce.flip_pairs`)",
            "",
            f"`ccnet_tiny` trained {settings['iters']} iterations (batch {settings['batch_size']}, the "
            "training flip swapping the pair) on the built-in `handed` task, whose \"left object\" and "
            "\"right object\" trade places in a mirror image like LIP's arms; mIoU (%) on "
            f"{len(next(iter(results[0]['scores'].values()))['IoU'])} classes of the validation split.",
            "",
            "| seed | no flip | flip, no swap (mmseg) | flip + swap | left / right IoU, no swap "
            "| left / right IoU, swap |",
            "|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
            f"Flip + swap beats flip without swap on every seed: **{'yes' if wins else 'NO'}**.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ccnet.reproduce.flip_pairs",
        description="Train a tiny CCNet on the handed task and compare flip testing with / without swapping "
        "the left/right classes.",
    )
    parser.add_argument("--iters", type=int, default=400, help="training iterations (default 400)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--val-length", type=int, default=128, help="validation samples (default 128)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="several seeds (instead of --seed)"
    )
    parser.add_argument(
        "--out",
        default=None,
        help="report folder: write flip_pairs.md / .json there and regenerate its report.md",
    )
    parser.add_argument(
        "--no-train-swap", action="store_true", help="train with mmsegmentation's flip (labels not swapped)"
    )
    parser.add_argument("--json", default=None, help="also write the result to this JSON file")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.iters < 1 or args.batch_size < 1 or args.val_length < 1:
        parser.error("--iters, --batch-size and --val-length must be positive")
    results = []
    for seed in args.seeds or [args.seed]:
        result = run_flip_pairs_demo(
            iters=args.iters,
            batch_size=args.batch_size,
            val_length=args.val_length,
            seed=seed,
            train_swap=not args.no_train_swap,
            progress=not args.no_progress,
        )
        print(f"seed {seed}:\n{format_scores(result)}")
        print(f"(trained {args.iters} iterations in {result['train_seconds']} s)")
        results.append(result)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results[0] if len(results) == 1 else results, file, indent=2)
    if args.out:
        from ccnet.reproduce.report import environment, write_report

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        record = {"environment": environment(), "runs": results}
        (out / "flip_pairs.json").write_text(json.dumps(record, indent=2))
        (out / "flip_pairs.md").write_text(report_section(results) + "\n")
        print(f"wrote {out / 'flip_pairs.md'} and {write_report(out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
