"""The ``ccnet`` command line: ``ccnet [--debug] <command> [options]``.

Each command lives in its own module of this package, which defines ``add_arguments(parser)`` and
``run(args) -> int``. Command modules keep heavy imports inside ``run`` so that ``ccnet --help`` stays fast.

Errors: a bad input ends in one line ``ccnet <command>: error: <message>`` on stderr, exit code 2 for usage
and config errors, 1 for bad data and faults, 130 for Ctrl-C; ``ccnet --debug <command>`` (or the environment
variable ``CCNET_DEBUG=1``, which also reaches torchrun workers) shows the traceback instead. Commands report
the errors they expect themselves (:func:`ccnet.cli.common.fail`); :func:`main` catches the rest.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from ccnet.cli.common import DEBUG_ENV, debug_enabled, error_exit_code, fail

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("ccnet.cli.train", "train a model (default: a tiny CCNet on the built-in context dataset)"),
    "eval": ("ccnet.cli.eval", "evaluate weights on a dataset split (mIoU table, JSON/markdown files)"),
    "predict": ("ccnet.cli.predict", "segment images: label PNGs + overlays"),
    "data": ("ccnet.cli.data", "inspect datasets: check a copy, list the built-in ones"),
    "demo": ("ccnet.cli.demo", "the recurrence ablation on the built-in context task: mIoU table, pictures"),
    "bench": ("ccnet.cli.bench", "efficiency report: FLOPs/memory vs non-local, scaling plot, throughput"),
    "info": ("ccnet.cli.info", "show a model's parameters, FLOPs and feature strides (no name: list all)"),
    "export": ("ccnet.cli.export", "export to ONNX (opset 17) or TorchScript, with a parity check"),
    "convert": ("ccnet.cli.convert", "convert an mmseg / SSSeg / authors' checkpoint to ccnet weights"),
    "app": ("ccnet.cli.app", "local web page: segment images and videos, click a pixel to see its attention"),
}


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are the one-line ``<prog>: error: <message>`` (exit 2), without
    argparse's usage block, and pointing at ``--help``."""

    def error(self, message: str) -> NoReturn:
        fail(self.prog, f"{message} (see {self.prog} --help)", 2)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    from ccnet import __version__

    parser = CommandParser(prog="ccnet", description="CCNet semantic segmentation toolkit.")
    parser.add_argument("--version", action="version", version=f"ccnet {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the full traceback of an error instead of one line (also: environment {DEBUG_ENV}=1)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module_name, _prog=sub.prog)
        importlib.import_module(module_name).add_arguments(sub)
    return parser


def _command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if "--debug" in unknown:  # `ccnet train --debug ...` means the same as `ccnet --debug train ...`
        unknown = [item for item in unknown if item != "--debug"]
        args.debug = True
    if args.debug:
        # Through the environment so that fail() in the commands and any subprocess see it too.
        os.environ[DEBUG_ENV] = "1"
    if args.command is None:
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        parser.print_help()
        return 0
    if unknown:  # named by the command's own prog, e.g. "ccnet train: error: unrecognized arguments: --x"
        _command_parser(parser, args.command).error(f"unrecognized arguments: {' '.join(unknown)}")
    prog = args._prog
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        if debug_enabled():
            raise
        return fail(prog, "interrupted (Ctrl-C)", 130)
    except Exception as error:  # the one place that turns any failure into one line
        if debug_enabled():
            raise
        return fail(prog, error, error_exit_code(error), unexpected=True)


if __name__ == "__main__":
    sys.exit(main())
