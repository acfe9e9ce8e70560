"""``ccnet eval [CONFIG|ZOO-NAME] [key=value ...] --weights W``: score a model on a dataset split.

CONFIG gives the dataset and protocol (``eval.*``: whole / slide, scales, flip); without it the
``config.yaml`` beside the weights (a ``ccnet train`` run) or the built-in default is used. A zoo name
(``mmseg:ccnet_r50-d8_512x1024_40k_cityscapes``) stands for its weights, model and protocol at once; point it
at the data with ``data.root=...``. Prints the per-class table and writes ``metrics_<split>.json`` / ``.md``;
``--format-only`` writes the test-server PNGs instead (Cityscapes: labelIds). ``--backend fast`` /
``fast-bf16`` scores the optimised inference copy (folded BatchNorm, channels-last; + bf16 autocast), to
measure what the faster path costs in accuracy. Works under ``torchrun``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ccnet.cli.common import add_config_arguments, fail, rank, setup_logging, split_config_items

if TYPE_CHECKING:
    from torch import nn

    from ccnet.config import Config
    from ccnet.data.base import SegmentationDataset
    from ccnet.data.meta import DatasetMeta
    from ccnet.engine.inference import Segmenter

PROG = "ccnet eval"
_ZOO_DATASETS = {"voc12aug": "voc"}  # zoo dataset name -> ccnet.data name
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


def _zoo_config(name: str) -> dict:
    """Config values (model, dataset, protocol) of a zoo entry."""
    from ccnet.models import get_weights

    entry = get_weights(name)
    config: dict = {
        "name": name.replace(":", "_"),
        "model": {"name": entry.arch, **entry.model_kwargs},
        "data": {
            "dataset": _ZOO_DATASETS.get(entry.dataset, entry.dataset),
            "crop_size": list(entry.crop_size),
        },
        "eval": {"mode": entry.test_mode},
    }
    if entry.test_scale:
        config["eval"]["test_scale"] = list(entry.test_scale)
    if entry.test_mode == "slide":
        config["eval"]["crop_size"] = list(entry.crop_size)
        config["eval"]["stride"] = list(entry.test_stride or entry.crop_size)
    return config


def resolve_config(source: str | None, overrides: list[str], weights: str | None):
    """(config, weights): from a zoo name, a config, the run's config.yaml beside the weights, or default."""
    from ccnet.config import ConfigError, load_config
    from ccnet.models import ZOO

    if source is None and weights in ZOO:
        source = weights
    if source is not None and source in ZOO:
        return load_config(_zoo_config(source), overrides), weights or source
    if weights is None:
        raise ConfigError("--weights is required (a weights file, a training checkpoint or a zoo name)")
    if source is None and (Path(weights).parent / "config.yaml").is_file():
        source = str(Path(weights).parent / "config.yaml")
    return load_config(source or "default", overrides), weights


def eval_dataset(config: Config, split: str) -> SegmentationDataset:
    """The ``split`` of the config's dataset with raw ``uint8`` items (evaluation input)."""
    from ccnet.data import get_dataset
    from ccnet.engine.evaluate import raw_pair

    options = {**config.data.options, **config.data.val_options}
    return get_dataset(config.data.dataset, config.data.root, split, transforms=raw_pair, **options)


def config_segmenter(model: nn.Module, config: Config, meta: DatasetMeta) -> Segmenter:
    """A Segmenter with the config's evaluation protocol; crop and test scale default to the training crop
    and the dataset's test scale."""
    from ccnet.engine.evaluate import build_segmenter

    return build_segmenter(
        model,
        config.eval,
        default_crop=config.data.crop_size or meta.crop_size,
        default_test_scale=meta.test_scale,
    )


def run(args: argparse.Namespace) -> int:
    from ccnet.config import ConfigError, config_to_dict
    from ccnet.data import DatasetError
    from ccnet.engine.checkpoint import load_model
    from ccnet.engine.dist import init_distributed
    from ccnet.engine.evaluate import (
        evaluate,
        format_only,
        format_table,
        write_reports,
    )

    source, overrides = split_config_items(args.items, PROG)
    setup_logging()
    try:
        config, weights = resolve_config(source, overrides, args.weights)
        split = args.split or config.data.val_split
        dataset = eval_dataset(config, split)
        meta = dataset.meta
        ctx = init_distributed(config.train.device)
        model, _ = load_model(
            weights, name=config.model.name, overrides=config.model.overrides(), device=ctx.device
        )
        if args.backend != "torch":
            from ccnet.engine.fast import optimize_for_inference

            model = optimize_for_inference(model, bf16=args.backend == "fast-bf16")
        segmenter = config_segmenter(model, config, meta)
    except (ConfigError, DatasetError, FileNotFoundError, ValueError, RuntimeError) as err:
        return fail(PROG, err)
    out = (
        Path(args.out)
        if args.out
        else (Path(weights).parent if Path(weights).is_file() else Path("runs") / "eval" / config.name)
    )
    progress = not args.no_progress
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
    if rank() == 0:
        print(format_table(metrics, meta.classes))
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
        print(f"mIoU {metrics.miou:.4f}; reports: {json_path}, {md_path}")
    return 0
