"""``ccnet data``: inspect datasets.

``ccnet data check NAME ROOT [--split S] [--workers N] [--limit N]`` decodes every image and label of a split
and prints counts, image sizes, a per-class pixel histogram and bad files; exit code 1 if anything is wrong.
``ccnet data list`` prints the dataset names with their number of classes and default crop size.
"""

from __future__ import annotations

import argparse

from ccnet.cli.common import fail, non_negative_int, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="validate a dataset copy: counts, sizes, label histogram, bad files",
        description="Decode every image and label of a split and report counts, sizes, the label histogram "
        "and every bad file (exit code 1 if any).",
    )
    check.add_argument("name", metavar="NAME", help="dataset name (see `ccnet data list`)")
    check.add_argument(
        "root", metavar="ROOT", nargs="?", default=None, help="dataset directory (not needed for 'context')"
    )
    check.add_argument("--split", default="train", help="split to check (default: train)")
    check.add_argument(
        "--workers", type=non_negative_int, default=0, help="DataLoader workers decoding files (default: 0)"
    )
    check.add_argument("--limit", type=positive_int, default=None, help="check only the first N samples")
    check.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    actions.add_parser("list", help="list the available datasets", description="List the available datasets.")


def run(args: argparse.Namespace) -> int:
    if args.data_command == "list":
        from ccnet.data import dataset_class, list_datasets

        for name in list_datasets():
            cls = dataset_class(name)
            meta = getattr(cls, "meta", None)
            detail = (
                f"{meta.num_classes} classes, crop {meta.crop_size[0]}x{meta.crop_size[1]}" if meta else ""
            )
            print(f"{name:15s} {detail or 'classes from ROOT/meta.yaml'}")
        return 0

    from ccnet.data import check_dataset, dataset_class, format_report

    try:
        dataset_class(args.name)
    except ValueError as error:  # a misspelt name is a usage error, not bad data
        return fail(f"ccnet data {args.data_command}", error, 2)

    report = check_dataset(
        args.name,
        args.root,
        args.split,
        workers=args.workers,
        progress=not args.no_progress,
        limit=args.limit,
    )
    print(format_report(report))
    if not report.ok:  # the report above details it; the contract's one line on stderr says why it failed
        return fail(f"ccnet data {args.data_command}", report.summary(), 1)
    return 0
