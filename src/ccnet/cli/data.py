"""``ccnet data``: inspect datasets.

``ccnet data check NAME ROOT [--split S] [--workers N] [--limit N]`` decodes every image and label of a split
and prints counts, image sizes, a per-class pixel histogram and bad files; exit code 1 if anything is wrong.
``ccnet data check coco ROOT [--split S]`` checks COCO 2017 in its official layout
(``ROOT/annotations/instances_{S}2017.json``, ``ROOT/{S}2017/``) and
``ccnet data check coco [ROOT] --ann FILE --images DIR`` any COCO-format instance set (paths relative to
ROOT when given): counts, image sizes, instances per class and every problem (bad JSON, missing images,
negative boxes, boxes or masks outside the image, undecodable images or masks) named by file and image id;
annotations with a zero-size box are listed as left out of training, not as failures.
``ccnet data list`` prints the dataset names with their number of classes and default crop size.
"""

from __future__ import annotations

import argparse

from ccnet.cli.common import fail, non_negative_int, positive_int

COCO = "coco"  # COCO-format instance segmentation: not a semantic segmentation dataset of the registry


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
    check.add_argument("--ann", default=None, metavar="FILE", help="coco only: a COCO-format instances JSON")
    check.add_argument(
        "--images", default=None, metavar="DIR", help="coco only: the image folder of --ann's file names"
    )
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
        print(f"{COCO:15s} instance segmentation (ccnet data check coco), classes from the annotation file")
        return 0

    if args.name == COCO:
        return _check_coco(args)
    if args.ann is not None or args.images is not None:
        return fail(f"ccnet data {args.data_command}", "--ann and --images apply to 'coco' only", 2)

    from ccnet.data import check_dataset, dataset_class, format_report

    try:
        dataset_class(args.name)
    except ValueError as error:  # a misspelt name is a usage error, not bad data
        return fail(
            f"ccnet data {args.data_command}", f"{error}; or {COCO!r} for COCO-format instance sets", 2
        )

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


def _check_coco(args: argparse.Namespace) -> int:
    prog = f"ccnet data {args.data_command}"
    if (args.ann is None) != (args.images is None):
        return fail(prog, "give both --ann FILE and --images DIR (or a COCO root instead)", 2)
    if args.root is None and args.ann is None:
        return fail(
            prog,
            "give a COCO ROOT (official layout) or --ann FILE --images DIR (relative to ROOT if given)",
            2,
        )

    from ccnet.data.coco import check_coco, format_coco_report

    report = check_coco(
        args.root,
        args.split,
        ann_file=args.ann,
        image_dir=args.images,
        workers=args.workers,
        limit=args.limit,
        progress=not args.no_progress,
    )
    print(format_coco_report(report))
    if not report.ok:
        return fail(prog, report.summary(), 1)
    return 0
