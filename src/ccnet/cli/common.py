"""Helpers shared by the ``train`` / ``eval`` / ``predict`` commands: config arguments and logging."""

from __future__ import annotations

import argparse
import logging
import os
import sys

CONFIG_HELP = (
    "a config file, the name of a shipped config (ccnet train --list; default: 'default') and/or overrides "
    "key.sub=value (e.g. train.max_iters=200 optim.lr=0.02 data.root=/data/cityscapes)"
)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("items", nargs="*", metavar="CONFIG|KEY=VALUE", help=CONFIG_HELP)


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def setup_logging() -> None:
    """INFO messages from rank 0 (WARNING and above from the other ranks), on stderr."""
    logging.basicConfig(
        level=logging.INFO if rank() == 0 else logging.WARNING,
        format="%(asctime)s %(levelname).1s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def fail(prog: str, error: BaseException, code: int = 2) -> int:
    """Print ``error`` as a one-line command error on every rank (a failing worker stays visible)."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    return code
