"""Per-image CPU inference time of Mask R-CNN R-50-FPN with and without the context module (the paper's COCO
models): ``maskrcnn_r50_fpn`` (baseline), ``maskrcnn_r50_fpn_nonlocal`` and ``maskrcnn_r50_fpn_rcca``.

One 3x800x1333 image (COCO's test size: shorter side 800, longer <= 1333, so the detector does not resize
it), random seeded weights with gamma / the non-local BN scale set to 0.5 so that the module computes
something, box score threshold 0 and 100 detections per image (the full post-processing and mask head run
as on a real image). Eval mode under ``torch.inference_mode``, fp32, eager; median of ``--repetitions``
interleaved repetitions after one warm-up (:func:`ccnet.measure.time_interleaved`), so that the ratios hold
on a shared machine. Prints the machine (CPU model, vector flags, threads) and writes
``benchmarks/results/maskrcnn[-quick].{json,md}``.

    python benchmarks/maskrcnn.py                 # R-50 at 800x1333 (minutes on 2 cores)
    python benchmarks/maskrcnn.py --threads 2     # torch threads (default: all cores)
    python benchmarks/maskrcnn.py --quick         # tiny models at 128x192 (smoke run)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import ccnet
from ccnet.measure import describe_machine, machine, time_interleaved

MODELS = {
    "baseline": "maskrcnn_r50_fpn",
    "+ non-local": "maskrcnn_r50_fpn_nonlocal",
    "+ RCCA": "maskrcnn_r50_fpn_rcca",
}
QUICK_MODELS = {
    "baseline": "maskrcnn_tiny",
    "+ non-local": "maskrcnn_tiny_nonlocal",
    "+ RCCA": "maskrcnn_tiny_rcca",
}
RESULTS = Path(__file__).parent / "results"


def build(name: str, size: tuple[int, int]) -> torch.nn.Module:
    torch.manual_seed(0)
    model = ccnet.create_model(
        name, num_classes=91, min_size=min(size), max_size=max(size), box_score_thresh=0.0
    ).eval()
    context = model.context
    with torch.no_grad():  # a module that does something (a fresh one is the identity)
        if hasattr(context, "cca"):
            context.cca.gamma.fill_(0.5)
        elif hasattr(context, "norm"):
            context.norm.weight.fill_(0.5)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny models at 128x192")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    size = (128, 192) if args.quick else (800, 1333)
    models = {label: build(name, size) for label, name in (QUICK_MODELS if args.quick else MODELS).items()}
    image = torch.rand(3, *size, generator=torch.Generator().manual_seed(0))

    def run(model: torch.nn.Module):
        def call() -> None:
            with torch.inference_mode():
                model([image])

        return call

    print(f"machine: {describe_machine()}")
    print(f"image 3x{size[0]}x{size[1]}, {args.repetitions} repetitions after 1 warm-up (median)")
    seconds = time_interleaved({label: run(model) for label, model in models.items()}, args.repetitions)
    base = seconds["baseline"]
    lines = ["| model | s / image | vs baseline |", "| --- | ---: | ---: |"]
    for label, value in seconds.items():
        lines.append(
            f"| {label} ({(QUICK_MODELS if args.quick else MODELS)[label]}) | {value:.3f} | "
            f"{value / base:.3f}x |"
        )
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    stem = "maskrcnn-quick" if args.quick else "maskrcnn"
    payload = {"machine": machine(), "size": list(size), "repetitions": args.repetitions, "seconds": seconds}
    (RESULTS / f"{stem}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(
        f"# Mask R-CNN CPU inference, 3x{size[0]}x{size[1]}\n\nmachine: {describe_machine()}\n\n{table}\n"
    )
    print(f"wrote {RESULTS / stem}.json / .md")


if __name__ == "__main__":
    main()
