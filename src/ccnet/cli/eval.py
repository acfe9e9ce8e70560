"""``ccnet eval [CONFIG|ZOO-NAME] [key=value ...] --weights W``: score a model on a dataset split.

CONFIG gives the dataset and protocol (``eval.*``: whole / slide, scales, flip); without it the
``config.yaml`` beside the weights (a ``ccnet train`` run) or the built-in default is used. A zoo name
(``mmseg:ccnet_r50-d8_512x1024_40k_cityscapes``) stands for its weights, model and protocol at once; point it
at the data with ``data.root=...``; so does a file written by ``ccnet convert`` from a zoo entry. Outside a
run folder, a file that names its architecture is built as that architecture unless ``model.name=`` names
another. Weights whose classes (count, or names when both sides know them) differ from the dataset's are
refused, naming both. Prints the per-class table and writes ``metrics_<split>.json`` / ``.md``;
``--format-only`` writes the test-server PNGs instead (Cityscapes: labelIds). ``--backend fast`` /
``fast-bf16`` scores the optimised inference copy (folded BatchNorm, channels-last; + bf16 autocast), to
measure what the faster path costs in accuracy. Works under ``torchrun``.

Instance models (``maskrcnn_*`` on ``data.dataset=instance`` or ``coco``) are scored by COCOeval: the box and
mask AP table, ``metrics_<split>.json`` / ``.md`` and the detections in COCO's results format
(``detections_<split>.json``); ``--format-only`` writes only the detections (e.g. for test-dev).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ccnet.cli.common import add_config_arguments, fail, rank, setup_logging, weights_command_exit_code

PROG = "ccnet eval"
BACKENDS = ("torch", "fast", "fast-bf16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--weights", default=None, help="weights file, training checkpoint or zoo name")
    parser.add_argument("--split", default=None, help="dataset split (default: data.val_split)")
    parser.add_argument("--out", default=None, help="output folder (default: beside the weights)")
    parser.add_argument("--format-only", action="store_true", help="write test-server PNGs, no scores")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="torch",
        help="torch (the model as built), fast (folded BN, channels-last) or fast-bf16 (+ bf16 autocast)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from ccnet.config import config_to_dict, split_config_items
    from ccnet.data import DatasetError
    from ccnet.engine.dist import init_distributed
    from ccnet.engine.evaluate import evaluate, format_only, format_table, write_reports
    from ccnet.engine.predict import check_output_folder
    from ccnet.engine.setup import (
        check_weights_fit_dataset,
        config_segmenter,
        eval_dataset,
        load_model,
        model_choice,
        resolve_config,
    )
    from ccnet.models.weights import is_url

    setup_logging()
    try:
        source, overrides = split_config_items(args.items)
        config, weights = resolve_config(source, overrides, args.weights)
        local_weights = not is_url(weights) and Path(weights).is_file()
        out = check_output_folder(
            Path(args.out)
            if args.out
            else (Path(weights).parent if local_weights else Path("runs") / "eval" / config.name),
            "--out",
        )
        split = args.split or config.data.val_split
        if _is_instance(config):
            return _run_instance(args, config, source, overrides, weights, split, out)
        dataset = eval_dataset(config, split)
        meta = dataset.meta
        ctx = init_distributed(config.train.device)
        name, model_overrides = model_choice(config, source, overrides, weights)
        model, info = load_model(
            weights,
            name=name,
            overrides=model_overrides,
            device=ctx.device,
            fallback_name=config.model.name,
        )
        check_weights_fit_dataset(model, info, meta, weights)
        if args.backend != "torch":
            from ccnet.deploy.fast import optimize_for_inference

            model = optimize_for_inference(model, bf16=args.backend == "fast-bf16")
        segmenter = config_segmenter(model, config, meta)
    except (DatasetError, OSError, ValueError, RuntimeError) as err:
        return fail(PROG, err, weights_command_exit_code(err))
    progress = not args.no_progress
    try:
        if args.format_only:
            target = out / f"format_{split}"
            count = format_only(
                segmenter,
                dataset,
                target,
                dataset_name=meta.name,
                palette=meta.palette,
                ctx=ctx,
                num_workers=config.data.num_workers,
                progress=progress,
            )
            if ctx.is_main:
                print(f"wrote {count} files to {target}" + (" (rank 0's share)" if ctx.distributed else ""))
            return 0
        metrics = evaluate(
            segmenter,
            dataset,
            meta.num_classes,
            ctx=ctx,
            ignore_index=meta.ignore_index,
            num_workers=config.data.num_workers,
            progress=progress,
        )
    except (DatasetError, OSError) as err:  # a corrupt image or label file of the split (named)
        return fail(PROG, err, 1)
    if rank() == 0:
        print(format_table(metrics, meta.classes))
        try:
            json_path, md_path = write_reports(
                metrics,
                meta.classes,
                out,
                stem=f"metrics_{split}" + ("" if args.backend == "torch" else f"_{args.backend}"),
                extra={
                    "title": f"{config.name}: {meta.name} {split}",
                    "weights": str(weights),
                    "backend": args.backend,
                    "eval": config_to_dict(config)["eval"],
                },
            )
        except OSError as err:
            return fail(PROG, f"cannot write the reports into {out}: {err}", 1)
        print(f"mIoU {metrics.miou:.4f}; reports: {json_path}, {md_path}")
    return 0


def _is_instance(config) -> bool:
    from ccnet.engine.loader import INSTANCE_DATASETS

    return config.data.dataset in INSTANCE_DATASETS


def _run_instance(
    args: argparse.Namespace, config, source, overrides, weights: str, split: str, out: Path
) -> int:
    """``ccnet eval`` of an instance model: COCOeval box / mask AP, or the detections only."""
    import json

    from ccnet.config import ConfigError
    from ccnet.data import DatasetError
    from ccnet.engine.coco_eval import collect_detections
    from ccnet.engine.loader import build_instance_split
    from ccnet.engine.setup import load_model, model_choice
    from ccnet.engine.training_model import InstanceTask

    try:
        if args.backend != "torch":
            raise ConfigError(
                f"--backend {args.backend}: instance models are evaluated with --backend torch only"
            )
        dataset = build_instance_split(config.data, split, evaluation=True)
        name, model_overrides = model_choice(config, source, overrides, weights)
        model_overrides = {**model_overrides, **InstanceTask.size_overrides(config.data)}
        model, _ = load_model(weights, name=name, overrides=model_overrides, fallback_name=config.model.name)
        if getattr(model, "task", None) != "instance":
            raise ConfigError(
                f"weights {weights} are of a semantic segmentation model; data.dataset="
                f"{config.data.dataset!r} needs an instance model (maskrcnn_*)"
            )
        if model.num_classes != dataset.num_classes:
            raise ConfigError(
                f"weights {weights} predict {model.num_classes - 1} classes (+ background) but dataset "
                f"{config.data.dataset!r} split {split!r} has {dataset.num_classes - 1}"
            )
        results = collect_detections(
            model, dataset, num_workers=config.data.num_workers, progress=not args.no_progress
        )
        detections = results.write(out / f"detections_{split}.json")
        if args.format_only:
            print(f"wrote the detections of {len(dataset)} images to {detections}")
            return 0
        metrics = results.evaluate()
        print(metrics.format_table())
        json_path, md_path = out / f"metrics_{split}.json", out / f"metrics_{split}.md"
        title = f"{config.name}: {config.data.dataset} {split}"
        json_path.write_text(
            json.dumps({"title": title, "weights": str(weights), **metrics.to_dict()}, indent=2) + "\n"
        )
        md_path.write_text(f"# {title}\n\n```\n{metrics.format_table()}\n```\n")
    except (DatasetError, OSError, ValueError, RuntimeError) as err:
        from ccnet.cli.common import weights_command_exit_code

        return fail(PROG, err, weights_command_exit_code(err))
    print(
        f"mask AP {metrics.mask_ap:.4f}  box AP {metrics.box_ap:.4f}; "
        f"reports: {json_path}, {md_path}, {detections}"
    )
    return 0
