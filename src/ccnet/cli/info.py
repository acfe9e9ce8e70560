"""``ccnet info [NAME]``: parameters, FLOPs and feature strides of a model; without NAME, list the models,
the shipped configs and the zoo weights. NAME is a registered model (``ccnet_r50_d8``) or zoo weights
(``mmseg:...``, not downloaded)."""

from __future__ import annotations

import argparse
from typing import Any

from ccnet.cli.common import fail, positive_int

PROG = "ccnet info"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="model name or zoo weights name; omit to list both")
    parser.add_argument(
        "--input-size",
        nargs=2,
        type=positive_int,
        default=(512, 1024),
        metavar=("H", "W"),
        help="input of the FLOP count (default: 512 1024)",
    )
    parser.add_argument(
        "--num-classes", type=positive_int, default=None, help="K (default: the zoo entry's, else 19)"
    )
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP count (one forward pass)")


def summarize_model(model: Any, input_size: tuple[int, int] | None = (512, 1024)) -> dict[str, Any]:
    """Parameter counts (total and per top-level part), backbone feature channels/strides and, when
    ``input_size`` is given, the FLOPs of one eval-mode forward pass on a (1, 3, H, W) input, or on one clip
    (1, T, 3, H, W) of ``clip_length`` frames for video models (counted by :func:`ccnet.measure.count_flops`:
    a multiply-add is 2 FLOPs)."""
    import torch

    from ccnet.measure import count_flops

    summary: dict[str, Any] = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "parts": {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()},
    }
    info = model.backbone.feature_info
    summary["features"] = [
        {"module": m, "channels": c, "stride": r}
        for m, c, r in zip(info.module_name(), info.channels(), info.reduction(), strict=True)
    ]
    if input_size is not None:
        device = next(model.parameters()).device
        clip = getattr(model, "clip_length", None)
        shape = (1, 3, *input_size) if clip is None else (1, clip, 3, *input_size)
        was_training = model.training
        model.eval()
        try:
            flops = count_flops(lambda: model(torch.zeros(shape, device=device)))
        finally:
            model.train(was_training)
        summary["input_shape"] = shape
        summary["flops"] = flops
    return summary


def _listing() -> str:
    from ccnet.config import config_description, list_configs
    from ccnet.models import ZOO, get_model_entry, list_models

    lines = ["models:"]
    lines += [f"  {name:24s} {get_model_entry(name).description}" for name in list_models()]
    lines += ["configs (ccnet train NAME):"]
    lines += [f"  {name:56s} {config_description(name)}" for name in list_configs()]
    lines += ["weights:"]
    for entry in ZOO.values():
        lines.append(f"  {entry.name:48s} {entry.arch:16s} {entry.dataset:11s} mIoU {entry.miou:.2f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ccnet.models import ZOO, create_model

    if args.name is None:
        print(_listing())
        return 0
    entry = ZOO.get(args.name)
    arch = entry.arch if entry else args.name
    num_classes = args.num_classes or (entry.num_classes if entry else 19)
    try:
        model = create_model(arch, num_classes=num_classes, **(entry.model_kwargs if entry else {}))
    except ValueError as err:
        return fail(PROG, err, 2)
    try:
        summary = summarize_model(model, None if args.no_flops else tuple(args.input_size))
    except RuntimeError as err:  # e.g. an input too small for the backbone's kernels
        height, width = args.input_size
        return fail(PROG, f"{arch} cannot run on a {height}x{width} input (--input-size): {err}", 2)
    lines = [f"model: {arch}  ({num_classes} classes, align_corners={model.align_corners})"]
    if entry:
        lines += [
            f"weights: {entry.name}  [{entry.source}] {entry.url}",
            f"  dataset {entry.dataset}, crop {entry.crop_size}, test {entry.test_mode}"
            + (f" stride {entry.test_stride}" if entry.test_stride else "")
            + f", test scale {entry.test_scale}, mIoU {entry.miou}"
            + (f" / {entry.miou_ms_flip} ms+flip" if entry.miou_ms_flip else ""),
            f"  preprocess mean {entry.preprocess.mean} std {entry.preprocess.std} "
            f"{'BGR' if entry.preprocess.bgr else 'RGB'}",
        ]
    parts = ", ".join(f"{name} {count / 1e6:.2f}M" for name, count in summary["parts"].items())
    lines.append(f"parameters: {summary['parameters'] / 1e6:.2f}M ({parts})")
    for feature in summary["features"]:
        lines.append(
            f"feature {feature['module']}: {feature['channels']} channels, stride {feature['stride']}"
        )
    if "flops" in summary:
        shape = "x".join(map(str, summary["input_shape"]))
        lines.append(f"FLOPs at {shape}: {summary['flops'] / 1e9:.1f} G")
    print("\n".join(lines))
    return 0
