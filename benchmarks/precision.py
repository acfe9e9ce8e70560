"""What the fast inference paths change in a trained model's predictions, on a dataset split.

For weights and a split (the same arguments as ``ccnet eval``: a config or the ``config.yaml`` beside the
weights, ``key=value`` overrides, a zoo name), every image goes through the plain model and each variant with
the config's evaluation protocol (``eval.mode``, scales, flip):

* ``plain``     -- the model as loaded, eager float32: the reference;
* ``fast_fp32`` -- BatchNorm folded, channels-last (``optimize_for_inference``);
* ``bf16``      -- ``fast_fp32`` under bfloat16 autocast.

Per variant: the fraction of pixels whose label equals plain's (argmax agreement), the largest |class
probability difference| to plain, and the mIoU against the ground truth. With random weights, logits of
different classes are nearly tied and bf16 rounding flips a few percent of pixels (``benchmarks/model.py``
reports that worst case); this script measures the effect on a model that has learnt something.

Writes ``benchmarks/results/precision.{json,md}``, which name the machine (CPU model and flags, threads).

    python benchmarks/precision.py --weights runs/default/<time>/best.pt
    python benchmarks/precision.py --weights mmseg:ccnet_r50-d8_512x1024_40k_cityscapes \\
        data.root=/data/cityscapes --limit 100
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ccnet.config import ConfigError, split_config_items
from ccnet.deploy.fast import cpu_supports_bf16, optimize_for_inference
from ccnet.engine.evaluate import scored_mask
from ccnet.engine.setup import config_segmenter, eval_dataset, load_model, resolve_config
from ccnet.measure import describe_machine, machine
from ccnet.metrics import ConfusionMatrix

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {"plain": None, "fast_fp32": {"bf16": False}, "bf16": {"bf16": True}}
TARGET_AGREEMENT = 0.999


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("items", nargs="*", metavar="CONFIG|KEY=VALUE", help="as for ccnet eval")
    parser.add_argument("--weights", required=True, help="weights file, training checkpoint or zoo name")
    parser.add_argument("--split", default=None, help="dataset split (default: data.val_split)")
    parser.add_argument("--limit", type=int, default=None, help="first N images of the split only")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    try:
        source, overrides = split_config_items(args.items)
        config, weights = resolve_config(source, overrides, args.weights)
    except ConfigError as err:
        raise SystemExit(f"precision.py: error: {err}") from None
    split = args.split or config.data.val_split
    dataset = eval_dataset(config, split)
    meta = dataset.meta
    model, _ = load_model(weights, name=config.model.name, overrides=config.model.overrides())
    segmenters = {}
    for name, fast_options in VARIANTS.items():
        network = model if fast_options is None else optimize_for_inference(model, **fast_options)
        segmenters[name] = config_segmenter(network, config, meta)
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    matrices = {n: ConfusionMatrix(meta.num_classes, ignore_index=meta.ignore_index) for n in VARIANTS}
    agree = dict.fromkeys(VARIANTS, 0)
    max_prob_diff = dict.fromkeys(VARIANTS, 0.0)
    seconds = dict.fromkeys(VARIANTS, 0.0)
    pixels = 0
    for index in tqdm(range(count), desc="images", unit="img"):
        item = dataset[index]
        predictions = {}
        for name, segmenter in segmenters.items():
            start = time.perf_counter()
            predictions[name] = segmenter.predict(item["image"], return_probs=True)
            seconds[name] += time.perf_counter() - start
        reference = predictions["plain"]
        pixels += reference.labels.numel()
        for name, prediction in predictions.items():
            agree[name] += int((prediction.labels == reference.labels).sum())
            difference = float((prediction.probs - reference.probs).abs().max())
            max_prob_diff[name] = max(max_prob_diff[name], difference)
            matrices[name].update(prediction.labels, scored_mask(prediction.labels, item["mask"]))

    rows = []
    for name in VARIANTS:
        rows.append(
            {
                "variant": name,
                "argmax_agreement": agree[name] / pixels,
                "max_prob_diff": max_prob_diff[name],
                "miou": matrices[name].compute().miou,
                "seconds_per_image": seconds[name] / count,
            }
        )
    bf16_agreement = agree["bf16"] / pixels
    verdict = {"value": bf16_agreement, "limit": TARGET_AGREEMENT, "met": bf16_agreement >= TARGET_AGREEMENT}
    report = {
        "weights": str(weights),
        "model": config.model.name,
        "dataset": meta.name,
        "split": split,
        "images": count,
        "pixels": pixels,
        "eval": {"mode": config.eval.mode, "scales": list(config.eval.scales), "flip": config.eval.flip},
        "environment": {**machine(), "bf16_supported": cpu_supports_bf16()},
        "rows": rows,
        "bf16_agreement_target": verdict,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "precision.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = _markdown(report)
    (args.out / "precision.md").write_text(markdown)
    print(markdown)
    return 0


def _markdown(report: dict) -> str:
    environment = report["environment"]
    lines = [
        "# Inference variants vs plain float32 on a trained model",
        "",
        f"`{report['model']}` weights `{report['weights']}`, {report['dataset']} {report['split']} "
        f"({report['images']} images, {report['pixels']} pixels, eval {report['eval']}); "
        f"{describe_machine(environment)} (bf16 kernels: {environment['bf16_supported']}).",
        "",
        "| variant | argmax agreement with plain | max abs probability diff | mIoU | s / image |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['variant']} | {100 * row['argmax_agreement']:.3f}% | {row['max_prob_diff']:.2e} | "
            f"{row['miou']:.4f} | {row['seconds_per_image']:.3f} |"
        )
    verdict = report["bf16_agreement_target"]
    lines += [
        "",
        f"Target: bf16 argmax agreement >= {100 * verdict['limit']:.1f}%: {100 * verdict['value']:.3f}% -> "
        f"{'met' if verdict['met'] else 'NOT met'}",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
