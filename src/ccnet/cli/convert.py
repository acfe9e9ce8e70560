"""``ccnet convert SRC DST``: convert an mmsegmentation / SSSegmentation / authors' checkpoint to our
layout and write it as ``.safetensors`` or ``.pth``. SRC is a file, a URL or a zoo name (``mmseg:...``).
With ``--arch`` (implied for zoo names, our own files and the authors' layout) the result is loaded strictly
into that architecture first, so a file that does not fit is reported (a few mismatching keys shown) instead
of written.

The written file carries everything the source knew, as string metadata: ``format``, ``source``, ``origin``,
``num_classes``, ``arch``, and where known ``model_overrides`` (JSON, e.g. ``{"recurrence": 1}``),
``classes`` and ``palette`` (JSON), and for a zoo entry (its name, or a file named like its download)
``zoo`` and ``test_protocol`` (JSON: mode, crop size, stride, test scale), so that the converted file is
evaluated and predicted like the zoo name. DST must not be SRC, and an existing DST needs ``--force``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ccnet.cli.common import fail

PROG = "ccnet convert"

# Metadata of our own files that a conversion passes on unchanged.
_CARRIED = ("arch", "model_overrides", "classes", "palette", "zoo", "test_protocol")


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
    parser.add_argument("--force", action="store_true", help="overwrite DST if it exists")


def _zoo_entry_of(src: str):
    """The zoo entry ``src`` names: a zoo name, or a file / URL named like one of its downloads."""
    from ccnet.models import ZOO

    if src in ZOO:
        return ZOO[src]
    name = Path(src.split("?", 1)[0]).name
    for entry in ZOO.values():
        if name in {Path(url).name for url in (entry.url, *entry.mirrors)}:
            return entry
    return None


def _zoo_metadata(entry) -> dict[str, str]:
    """``zoo``, ``test_protocol``, ``model_overrides``, ``classes`` and ``palette`` of a zoo entry."""
    from ccnet.data import dataset_class
    from ccnet.engine.setup import zoo_config

    config = zoo_config(entry.name)
    meta = {"zoo": entry.name, "test_protocol": json.dumps(config["eval"])}
    if entry.model_kwargs:
        meta["model_overrides"] = json.dumps(entry.model_kwargs)
    dataset = dataset_class(config["data"]["dataset"]).meta
    if dataset.num_classes == entry.num_classes:
        meta["classes"] = json.dumps(list(dataset.classes))
        meta["palette"] = json.dumps([list(colour) for colour in dataset.palette])
    return meta


def _checkpoint_classes(checkpoint: Mapping[str, Any]) -> dict[str, str]:
    """``classes`` / ``palette`` stored by mmseg in a checkpoint's ``meta`` (0.x: ``CLASSES`` /
    ``PALETTE``; 1.x: ``dataset_meta``), as our JSON strings."""
    meta = checkpoint.get("meta")
    if not isinstance(meta, Mapping):
        return {}
    inner = meta.get("dataset_meta") if isinstance(meta.get("dataset_meta"), Mapping) else {}
    classes = meta.get("CLASSES", inner.get("classes"))
    palette = meta.get("PALETTE", inner.get("palette"))
    out = {}
    if isinstance(classes, list | tuple) and classes and all(isinstance(c, str) for c in classes):
        out["classes"] = json.dumps(list(classes))
        if isinstance(palette, list | tuple) and len(palette) == len(classes):
            with contextlib.suppress(TypeError, ValueError):  # not colours: leave the palette out
                out["palette"] = json.dumps([[int(v) for v in colour] for colour in palette])
    return out


def run(args: argparse.Namespace) -> int:
    from ccnet.engine.predict import OutputPathError, check_output_file
    from ccnet.models import ZOO, create_model
    from ccnet.models.convert import (
        CheckpointMismatchError,
        convert_checkpoint,
        detect_source,
        load_checkpoint_strict,
        unwrap_state_dict,
    )
    from ccnet.models.weights import cached_download, is_url, read_weights, save_weights

    entry = ZOO.get(args.src)
    try:
        inputs = [] if entry or is_url(args.src) else [args.src]
        check_output_file(args.dst, inputs=inputs, force=args.force, option="DST")
        location = cached_download([entry.url, *entry.mirrors]) if entry else args.src
        if entry is None and not is_url(args.src) and not Path(args.src).exists():
            raise FileNotFoundError(f"SRC {args.src}: no such file (nor a zoo name, see ccnet info)")
        check_output_file(args.dst, inputs=[location], force=args.force, option="DST")
        checkpoint, input_meta = read_weights(location)
        source = entry.source if entry else args.source
        if source == "auto":
            source = detect_source(unwrap_state_dict(checkpoint))
        state = convert_checkpoint(checkpoint, source)
        entry = entry or _zoo_entry_of(args.src)
        meta: dict[str, str] = {"format": "ccnet", "source": source, "origin": args.src}
        if "head.classifier.weight" in state:
            meta["num_classes"] = str(int(state["head.classifier.weight"].shape[0]))
        if source == "ccnet":  # our own file: pass on what it says about itself
            meta.update({k: input_meta[k] for k in _CARRIED if k in input_meta})
        else:
            meta.update(_checkpoint_classes(checkpoint))
        arch = (
            args.arch
            or (entry.arch if entry else None)
            or meta.get("arch")
            or ("ccnet_r101_d8_authors" if source == "authors" else None)
        )
        if entry is not None and arch == entry.arch:
            meta.update(_zoo_metadata(entry))
        if arch:
            overrides = json.loads(meta.get("model_overrides", "{}"))
            num_classes = int(meta["num_classes"]) if "num_classes" in meta else None
            model = create_model(arch, num_classes=num_classes, **overrides)
            try:
                load_checkpoint_strict(model, state, what=f"converted {args.src}")
            except CheckpointMismatchError as err:
                detail = str(err).split("; ", 1)[-1]  # the key listing, after "... does not fit the model"
                what = f"{source} layout" + (f", {num_classes} classes" if num_classes else "")
                options = "".join(f", {k}={v!r}" for k, v in sorted(overrides.items()))
                raise CheckpointMismatchError(
                    f"{args.src} ({what}) does not fit architecture {arch!r}{options}: {detail}"
                ) from err
            meta["arch"] = arch
    except (OutputPathError, CheckpointMismatchError, OSError, ValueError, RuntimeError) as err:
        return fail(PROG, err, 2 if isinstance(err, OutputPathError) else 1)
    try:
        path = save_weights(args.dst, state, meta)
    except OSError as err:
        return fail(PROG, f"cannot write {args.dst}: {err}", 1)
    print(f"wrote {len(state)} tensors ({source} -> ccnet{', checked as ' + arch if arch else ''}) to {path}")
    return 0
