"""The ``ccnet`` command line: ``ccnet <command> [options]``.

Each command lives in its own module of this package, which defines ``add_arguments(parser)`` and
``run(args) -> int``. Command modules keep heavy imports inside ``run`` so that ``ccnet --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

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
}


def build_parser() -> argparse.ArgumentParser:
    from ccnet import __version__

    parser = argparse.ArgumentParser(prog="ccnet", description="CCNet semantic segmentation toolkit.")
    parser.add_argument("--version", action="version", version=f"ccnet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
        importlib.import_module(module_name).add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
