"""``ccnet predict [--model NAME] --weights W INPUT... --out DIR``: label PNGs and overlays for images and
videos.

INPUT: image files, video files (.mp4, .avi, .mov, .mkv, .webm), folders (their images) or glob patterns.
Each video gives ``<stem>_overlay.mp4`` at its own frame rate (and with ``--video-labels`` the label PNG
of every frame in ``<stem>_labels/``); a video model (``ccnet3d_*``) segments each frame with the clip of
its neighbours. ``--weights``: a file, a URL (downloaded into
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
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image or video files, folders or glob patterns"
    )
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
    parser.add_argument(
        "--no-overlay", action="store_true", help="write the label PNGs only (videos: implies --video-labels)"
    )
    parser.add_argument(
        "--video-labels", action="store_true", help="also write each video frame's label PNG (<stem>_labels/)"
    )
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=0.5,
        help="instance models (Mask R-CNN): draw and save the detections scoring at least this",
    )
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
    from ccnet.data import DatasetError
    from ccnet.engine.predict import check_output_folder, expand_inputs
    from ccnet.engine.video_io import is_video

    files, problems = expand_inputs(args.inputs)
    videos = [path for path in files if is_video(path)]
    images = [path for path in files if not is_video(path)]
    try:
        out = check_output_folder(args.out, "--out")
        model, info = _load(args)
        if getattr(model, "task", None) == "instance":
            return _predict_instances(model, info, images, problems, videos, out, args)
        segmenter, palette = _segmenter(model, info, args)
    except (DatasetError, OSError, ValueError, RuntimeError) as err:
        return fail(PROG, err, weights_command_exit_code(err))
    try:
        written, failed = _predict_images(segmenter, images, out, palette, args) if images else (0, [])
        videos_written, frames, video_failed = _predict_videos(segmenter, videos, out, palette, args)
    except OSError as err:  # the output folder filled up or vanished while writing
        return fail(PROG, f"cannot write into {out}: {err}", 1)
    failed = problems + failed + video_failed
    for item, reason in failed:
        print(f"{PROG}: skipped {item}: {reason}", file=sys.stderr)
    print(
        f"wrote {written} label maps to {args.out}"
        + (f"; {videos_written} videos ({frames} frames)" if videos else "")
        + (f"; {len(failed)} inputs failed" if failed else "")
    )
    return 1 if failed or not (written or videos_written) else 0


def _load(args: argparse.Namespace):
    """(model, weights info) of the weights and backend that ``args`` name, on the chosen device."""
    import torch

    from ccnet.engine.dist import resolve_device
    from ccnet.engine.setup import load_model

    device = torch.device(args.device) if ":" in args.device else resolve_device(args.device)
    backend = getattr(args, "backend", "torch")
    if backend == "onnxruntime":
        from ccnet.deploy.onnxruntime_backend import load_onnx_model

        return load_onnx_model(args.weights, device=device)
    model, info = load_model(args.weights, name=args.model, device=device)
    if getattr(model, "task", None) == "instance":
        _check_instance_options(args)
    elif backend in ("fast", "fast-bf16"):
        from ccnet.deploy.fast import optimize_for_inference

        model = optimize_for_inference(model, bf16=backend == "fast-bf16")
    return model, info


def _check_instance_options(args: argparse.Namespace) -> None:
    """Refuse the semantic-segmentation options that an instance model (Mask R-CNN) does not take."""
    given = [
        flag
        for flag, value in (
            ("--backend", args.backend != "torch"),
            ("--mode", args.mode is not None),
            ("--crop-size", args.crop_size is not None),
            ("--stride", args.stride is not None),
            ("--test-scale", args.test_scale is not None),
            ("--scales", tuple(args.scales) != (1.0,)),
            ("--flip", args.flip),
            ("--video-labels", args.video_labels),
            ("--dataset", args.dataset is not None),
        )
        if value
    ]
    if given:
        raise ValueError(
            f"{args.weights} is an instance segmentation model (Mask R-CNN): it takes none of "
            f"{', '.join(given)} (its options: --score-threshold, --alpha, --no-overlay)"
        )


def _predict_instances(model, info, images, problems, videos, out, args) -> int:
    """Overlays and detection JSONs of an instance segmentation model (Mask R-CNN + context module)."""
    from ccnet.engine.instance_predict import predict_instances

    names = info.get("classes") or [f"class {k}" for k in range(model.num_classes)]
    report = predict_instances(
        model,
        images,
        out,
        names,
        score_threshold=args.score_threshold,
        alpha=args.alpha,
        with_overlay=not args.no_overlay,
        progress=not args.no_progress,
    )
    refused = [(str(path), "instance models predict images, not videos") for path in videos]
    failed = problems + refused + report.failed
    for item, reason in failed:
        print(f"{PROG}: skipped {item}: {reason}", file=sys.stderr)
    print(
        f"wrote {len(report.written)} detection files to {args.out}"
        + (f"; {len(failed)} inputs failed" if failed else "")
    )
    return 1 if failed or not report.written else 0


def _segmenter(model, info, args: argparse.Namespace):
    """(Segmenter, palette) of the loaded model and the inference options that ``args`` name."""
    from ccnet.engine.inference import Segmenter

    palette = _palette(info["palette"], args.dataset, model, model.num_classes)
    options = {"scales": args.scales, "flip": args.flip}
    if info.get("classes"):  # left/right classes (LIP's arms, legs, shoes) trade places in flip testing
        from ccnet.data.meta import flip_pairs_for_classes

        options["flip_pairs"] = flip_pairs_for_classes(info["classes"])
    for key in ("mode", "crop_size", "stride", "test_scale"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    return Segmenter(model, **options), palette


def _predict_images(segmenter, images, out, palette, args) -> tuple[int, list[tuple[str, str]]]:
    """Label PNGs (and overlays) of the image files; (number written, (input, reason) of those skipped)."""
    from ccnet.engine.predict import predict_files

    report = predict_files(
        segmenter,
        images,
        out,
        palette,
        with_overlay=not args.no_overlay,
        alpha=args.alpha,
        progress=not args.no_progress,
    )
    return len(report.written), report.failed


def _predict_videos(segmenter, videos, out, palette, args) -> tuple[int, int, list[tuple[str, str]]]:
    """Overlay videos (and frame label PNGs) of the video files; (videos written, frames, skipped)."""
    from ccnet.data import DatasetError
    from ccnet.engine.predict import predict_video

    written = frames = 0
    failed: list[tuple[str, str]] = []
    used: set[str] = set()
    for path in videos:
        stem, n = path.stem, 1
        while stem in used:  # same file name from different folders
            n += 1
            stem = f"{path.stem}_{n}"
        used.add(stem)
        try:
            _, count = predict_video(
                segmenter,
                path,
                out,
                palette,
                with_overlay=not args.no_overlay,
                label_frames=args.video_labels or args.no_overlay,
                alpha=args.alpha,
                progress=not args.no_progress,
                stem=stem,
            )
        except DatasetError as err:
            failed.append((str(path), str(err)))
            continue
        written += 1
        frames += count
    return written, frames, failed
