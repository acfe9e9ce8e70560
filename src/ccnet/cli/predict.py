"""``ccnet predict [--model NAME] --weights W INPUT... --out DIR``: label PNGs and overlays for images.

INPUT: image files, folders (their images) or glob patterns. ``--weights``: a file, a URL (downloaded into
the torch hub cache like ``model.pretrained=``) or a zoo name. Weights written by ``ccnet train`` or
``ccnet convert`` name their model and classes, and their architecture wins unless ``--model`` names
another; other checkpoints need ``--model`` (and ``--dataset``, a name or a folder dataset's root, for the
class colours). ``--out`` must be a folder that can be written (checked first). Unreadable inputs are
reported and skipped, and the exit code is then 1.

``--backend``: ``torch`` (the plain model), ``fast`` (BatchNorm folded, channels-last), ``fast-bf16`` (also
bf16 autocast; changes a small fraction of labels), ``onnxruntime`` (``--weights`` is a file written by
``ccnet export --format onnx``; classes, palette and normalisation come from it).
"""

from __future__ import annotations

import argparse
import sys

from ccnet.cli.common import fail, weights_command_exit_code

PROG = "ccnet predict"
BACKENDS = ("torch", "fast", "fast-bf16", "onnxruntime")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument("--weights", required=True, help="weights file, training checkpoint or zoo name")
    parser.add_argument("--model", default=None, help="registered model name (default: named by the weights)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--dataset",
        default=None,
        help="dataset whose colours to use: a name, or a folder dataset's root (default: the weights')",
    )
    parser.add_argument("--mode", choices=("whole", "slide"), default=None, help="default: the weights' own")
    parser.add_argument("--crop-size", nargs=2, type=int, metavar=("H", "W"), help="sliding-window tile")
    parser.add_argument("--stride", nargs=2, type=int, metavar=("H", "W"), help="sliding-window step")
    parser.add_argument("--test-scale", nargs=2, type=int, metavar=("LONG", "SHORT"), help="resize bound")
    parser.add_argument("--scales", nargs="+", type=float, default=(1.0,), help="multi-scale factors")
    parser.add_argument("--flip", action="store_true", help="also average the horizontally flipped image")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="torch, fast (folded BN, channels-last), fast-bf16 or onnxruntime (--weights = .onnx file)",
    )
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the label colours")
    parser.add_argument("--no-overlay", action="store_true", help="write the label PNGs only")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _palette(info_palette, dataset: str | None, model, num_classes: int):
    """Colours: --dataset (a dataset name, or the root folder of a ``folder`` dataset), else the weights'
    own, else their zoo dataset's, else the VOC colour map.

    Raises:
        ConfigError: an unknown dataset, ``folder`` without its root, or a dataset of another class count.
    """
    from ccnet.config import ConfigError
    from ccnet.data import dataset_class
    from ccnet.data.meta import voc_colormap

    if dataset:
        meta = _dataset_meta(dataset)
        if meta.num_classes != num_classes:
            raise ConfigError(
                f"--dataset {dataset}: {meta.num_classes} classes, but the weights predict {num_classes}; "
                "pass the dataset the weights were trained on"
            )
        return meta.palette
    if info_palette:
        return info_palette
    entry = getattr(model, "pretrained_cfg", None)
    if entry is not None:
        name = {"voc12aug": "voc"}.get(entry.dataset, entry.dataset)
        return dataset_class(name).meta.palette
    return voc_colormap(num_classes)


def _dataset_meta(dataset: str):
    """The metadata of ``--dataset``: a registered dataset with built-in classes, or a folder dataset's
    root (its ``meta.yaml``). Any problem is a ConfigError naming ``--dataset``."""
    from pathlib import Path

    from ccnet.config import ConfigError
    from ccnet.data import dataset_class
    from ccnet.data.folder import read_folder_meta

    try:
        if Path(dataset).is_dir():
            return read_folder_meta(dataset)[0]
        meta = getattr(dataset_class(dataset), "meta", None)
    except ValueError as err:  # unknown name (valid ones listed), unreadable meta.yaml (named)
        raise ConfigError(f"--dataset {dataset}: {err}") from err
    if meta is None:  # the folder format: its classes and colours are in each dataset's meta.yaml
        raise ConfigError(
            f"--dataset {dataset}: this dataset has no built-in classes or colours; pass its root folder "
            "(the one holding meta.yaml) instead"
        )
    return meta


def run(args: argparse.Namespace) -> int:
    import torch

    from ccnet.data import DatasetError
    from ccnet.engine.dist import resolve_device
    from ccnet.engine.inference import Segmenter
    from ccnet.engine.predict import check_output_folder, expand_inputs, predict_files
    from ccnet.engine.setup import load_model

    files, problems = expand_inputs(args.inputs)
    try:
        out = check_output_folder(args.out, "--out")
        device = torch.device(args.device) if ":" in args.device else resolve_device(args.device)
        backend = getattr(args, "backend", "torch")
        if backend == "onnxruntime":
            from ccnet.deploy.onnxruntime_backend import load_onnx_model

            model, info = load_onnx_model(args.weights, device=device)
        else:
            model, info = load_model(args.weights, name=args.model, device=device)
            if backend in ("fast", "fast-bf16"):
                from ccnet.deploy.fast import optimize_for_inference

                model = optimize_for_inference(model, bf16=backend == "fast-bf16")
        palette = _palette(info["palette"], args.dataset, model, model.num_classes)
        options = {"scales": args.scales, "flip": args.flip}
        for key in ("mode", "crop_size", "stride", "test_scale"):
            if getattr(args, key) is not None:
                options[key] = getattr(args, key)
        segmenter = Segmenter(model, **options)
    except (DatasetError, OSError, ValueError, RuntimeError) as err:
        return fail(PROG, err, weights_command_exit_code(err))
    try:
        report = predict_files(
            segmenter,
            files,
            out,
            palette,
            with_overlay=not args.no_overlay,
            alpha=args.alpha,
            progress=not args.no_progress,
        )
    except OSError as err:  # the output folder filled up or vanished while writing
        return fail(PROG, f"cannot write into {out}: {err}", 1)
    failed = problems + report.failed
    for item, reason in failed:
        print(f"{PROG}: skipped {item}: {reason}", file=sys.stderr)
    print(
        f"wrote {len(report.written)} label maps to {args.out}"
        + (f"; {len(failed)} inputs failed" if failed else "")
    )
    return 1 if failed or not report.written else 0
