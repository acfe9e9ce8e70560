"""``ccnet train [CONFIG] [key.sub=value ...] [--resume [CHECKPOINT]]``: train a model.

CONFIG is a YAML file or the name of a config shipped with the package (``--list`` shows them). Without it
the shipped ``default`` config trains a tiny CCNet on the generated context dataset (a few minutes on a
CPU). Multi-process: ``torchrun --nproc-per-node=N -m ccnet train CONFIG ...``.
"""

from __future__ import annotations

import argparse
import math

from ccnet.cli.common import add_config_arguments, fail, rank, setup_logging

PROG = "ccnet train"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="CHECKPOINT",
        help="continue the run: from CHECKPOINT (a file or run directory), or without it from the latest "
        "checkpoint of train.work_dir or of the newest run under runs/<name>",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--list", action="store_true", help="list the shipped configs (recipes) and exit")


def run(args: argparse.Namespace) -> int:
    import yaml
    from tqdm.contrib.logging import logging_redirect_tqdm

    from ccnet.config import (
        DEFAULT_CONFIG,
        ConfigError,
        config_description,
        config_to_dict,
        list_configs,
        load_config,
        split_config_items,
    )
    from ccnet.data import DatasetError
    from ccnet.engine.evaluate import format_table
    from ccnet.engine.train import TrainingError, train

    items, resume = list(args.items), args.resume
    if isinstance(resume, str) and "=" in resume:  # `--resume key=value`: an override, not a checkpoint
        items.append(resume)
        resume = True
    if args.list:
        names = list_configs()
        width = max(map(len, names))
        print("\n".join(f"{name:{width}s}  {config_description(name)}" for name in names))
        return 0
    try:
        source, overrides = split_config_items(items)
        config = load_config(source or DEFAULT_CONFIG, overrides)
    except ConfigError as err:
        return fail(PROG, err)
    if args.print_config:
        print(yaml.safe_dump(config_to_dict(config), sort_keys=False), end="")
        return 0

    setup_logging()
    try:
        with logging_redirect_tqdm():
            result = train(config, resume=resume)
    except (ConfigError, DatasetError, TrainingError, FileNotFoundError, ValueError) as err:
        return fail(PROG, err, code=1)
    if rank() == 0 and result.metrics is not None:
        print(format_table(result.metrics, result.classes))
        best = f" (best {result.best_miou:.4f})" if result.best_miou is not None else ""
        miou = result.metrics.miou
        print(f"final mIoU {miou:.4f}{best} after {result.iterations} iterations")
        print(f"run directory: {result.work_dir}")
        print(f"weights: {result.weights}")
        if math.isnan(miou):
            return 1
    return 0
