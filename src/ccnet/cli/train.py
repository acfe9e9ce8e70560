"""``ccnet train [CONFIG] [key.sub=value ...] [--resume [CHECKPOINT]]``: train a model.

CONFIG is a YAML file or the name of a config shipped with the package (``--list`` shows them). Without it
the shipped ``default`` config trains a tiny CCNet on the generated context dataset (about 2 minutes on a
CPU), and ``--resume`` continues with the config.yaml of the run it resumes (plus the overrides given).
Multi-process: ``torchrun --nproc-per-node=N -m ccnet train CONFIG ...``.

Resume rule (see :mod:`ccnet.engine.run_dir`): ``--resume`` continues exactly one run, the newest under
``runs/<name>/`` (or ``train.work_dir``, or PATH), with that run's config; a lower ``optim.lr``, a longer
``train.max_iters`` and other schedule values are applied to the restored optimiser and schedule, logging
and checkpoint settings may change too, anything else is refused naming the keys. Nothing in the run's
folder is written before its checkpoint has been loaded.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path

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
        help="continue the run, with its config.yaml (when no CONFIG is given) and the overrides given: from "
        "CHECKPOINT (an iter_*.pt file or a run folder), or without it from the latest checkpoint of "
        "train.work_dir or of the newest run under runs/<name> (refused if that run has no checkpoint); "
        "overrides allowed on resume: optim.lr and other optim schedule values, train.max_iters, "
        "logging/checkpoint settings",
    )
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="with --resume: let other config keys differ from the run's too; they take effect and are "
        "recorded in its config.yaml",
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
    from ccnet.engine.run_dir import run_folder_to_resume
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
        if source is None and resume:  # continue the run with its own config (+ the overrides given)
            saved = _run_config_of(run_folder_to_resume(config, resume))
            if saved is not None:
                # where the run is was decided above: the work_dir a copied config.yaml records must not
                # redirect the resume to another folder
                resumed = load_config(saved, overrides)
                config = replace(resumed, train=replace(resumed.train, work_dir=config.train.work_dir))
    except ConfigError as err:
        return fail(PROG, err)
    if args.print_config:
        print(yaml.safe_dump(config_to_dict(config), sort_keys=False), end="")
        return 0

    setup_logging()
    try:
        with logging_redirect_tqdm():
            result = train(config, resume=resume, allow_config_change=args.allow_config_change)
    except ConfigError as err:  # a setting that cannot work, or a resume config the run cannot take
        return fail(PROG, err, code=2)
    except (DatasetError, TrainingError, ValueError) as err:
        return fail(PROG, err, code=1)
    except OSError as err:  # a file that cannot be read or written; its message names it
        return fail(PROG, err, code=1)
    if rank() == 0 and result.metrics is not None and hasattr(result.metrics, "mask_ap"):  # instance model
        print(result.metrics.format_table())
        best = f" (best {result.best_miou:.4f})" if result.best_miou is not None else ""
        print(f"final mask AP {result.metrics.mask_ap:.4f}{best} after {result.iterations} iterations")
        print(f"run directory: {result.work_dir}")
        print(f"weights: {result.weights}")
        return 0
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


def _run_config_of(folder: Path | None) -> Path | None:
    """The ``config.yaml`` of the run folder ``--resume`` continues, or None when there is none (the
    shipped default is used then)."""
    path = folder / "config.yaml" if folder is not None else None
    return path if path is not None and path.is_file() else None
