"""``ccnet convert SRC DST``: convert an mmsegmentation / SSSegmentation / authors' checkpoint to our
layout and write it as ``.safetensors`` or ``.pth``. SRC is a file, a URL or a zoo name (``mmseg:...``).
With ``--arch`` (implied for zoo names and the authors' layout) the result is loaded strictly into that
architecture first, so a file that does not fit is reported (mismatching keys listed) instead of written."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="checkpoint file, URL or zoo name")
    parser.add_argument("dst", help="output file: .safetensors, or .pth")
    parser.add_argument(
        "--source",
        default="auto",
        choices=["auto", "mmseg", "ssseg", "authors", "ccnet"],
        help="input layout",
    )
    parser.add_argument("--arch", default=None, help="architecture to check the weights against")


def run(args: argparse.Namespace) -> int:
    from ccnet.models import ZOO, create_model
    from ccnet.models.convert import (
        CheckpointMismatchError,
        convert_checkpoint,
        detect_source,
        load_checkpoint_strict,
        unwrap_state_dict,
    )
    from ccnet.models.weights import cached_download, read_weights, save_weights

    entry = ZOO.get(args.src)
    try:
        location = cached_download([entry.url, *entry.mirrors]) if entry else args.src
        checkpoint, _ = read_weights(location)
        source = entry.source if entry else args.source
        if source == "auto":
            source = detect_source(unwrap_state_dict(checkpoint))
        state = convert_checkpoint(checkpoint, source)
        arch = (
            args.arch
            or (entry.arch if entry else None)
            or ("ccnet_r101_d8_authors" if source == "authors" else None)
        )
        meta = {"format": "ccnet", "source": source, "origin": args.src}
        if "head.classifier.weight" in state:
            meta["num_classes"] = int(state["head.classifier.weight"].shape[0])
        if arch:
            model = create_model(
                arch, num_classes=meta.get("num_classes"), **(entry.model_kwargs if entry else {})
            )
            load_checkpoint_strict(model, state, what=f"converted {args.src}")
            meta["arch"] = arch
    except (CheckpointMismatchError, ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"ccnet convert: error: {err}", file=sys.stderr)
        return 1
    path = save_weights(args.dst, state, meta)
    print(f"wrote {len(state)} tensors ({source} -> ccnet{', checked as ' + arch if arch else ''}) to {path}")
    return 0
