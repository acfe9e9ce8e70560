"""A plain folder format for your own data: ``get_dataset("folder", root, split)``.

Layout::

    root/
      meta.yaml            # or meta.yml / meta.json
      images/              # *.png, *.jpg, ... (RGB)
      masks/               # <image stem>.png, single-channel class indices 0..K-1, 255 = ignore
      splits/<split>.txt   # optional: one image stem per line

and ``meta.yaml``::

    classes: [background, cat, dog]       # required, K <= 255 names
    palette: [[0, 0, 0], [255, 0, 0], [0, 0, 255]]   # optional, default: the VOC colour map
    ignore_index: 255                     # optional: the stored value meaning "ignore" (>= K)
    reduce_zero_label: false              # optional: stored 0 -> ignore, c -> c - 1 (ADE20K style)
    train_scale: [1024, 512]              # optional (long side, short side); crop_size: [512, 512]
    flip_pairs: [[1, 2]]                  # optional: classes swapped by a horizontal flip (left/right)

Values are typed as shown and checked (an error names the file and the key): ``reduce_zero_label`` must be a
real boolean (a quoted ``'false'`` is refused, not read as true), integers real integers, and no other key is
allowed (a misspelt one would otherwise be ignored).

A split is chosen, in order, by a subfolder (``images/<split>/`` with ``masks/<split>/``), by a list file
``splits/<split>.txt``, or ``split="all"`` for every image in ``images/``. Masks with any other value, colour
(RGB) masks, and images without a mask (or masks without an image) are errors naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ccnet.data.base import (
    FileSegmentationDataset,
    Listing,
    PairTransform,
    Sample,
    pair_by_key,
    register_dataset,
)
from ccnet.data.files import DatasetError, list_files
from ccnet.data.labels import LabelMapping, index_labels, reduce_zero_label
from ccnet.data.meta import IGNORE_INDEX, DatasetMeta, check_flip_pairs, voc_colormap

META_FILES = ("meta.yaml", "meta.yml", "meta.json")
# Every key meta.yaml may hold: a misspelt one ("ignore_idx") would otherwise be ignored silently.
_META_KEYS = (
    "name",
    "classes",
    "palette",
    "ignore_index",
    "reduce_zero_label",
    "train_scale",
    "test_scale",
    "crop_size",
    "flip_pairs",
)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _pair(values: Any, what: str, where: Path) -> tuple[int, int] | None:
    if values is None:
        return None
    if not (
        isinstance(values, list | tuple) and len(values) == 2 and all(_is_int(v) and v > 0 for v in values)
    ):
        raise DatasetError(f"{where}: '{what}' must be a list of two positive integers, got {values!r}")
    return int(values[0]), int(values[1])


def read_folder_meta(root: str | Path) -> tuple[DatasetMeta, dict[str, Any]]:
    """Parse ``root/meta.{yaml,yml,json}`` -> (metadata, options ``ignore_value``/``reduce_zero_label``)."""
    root = Path(root)
    path = next((root / n for n in META_FILES if (root / n).is_file()), None)
    if path is None:
        raise DatasetError(f"folder: no metadata file ({' / '.join(META_FILES)}) in {root}")
    try:
        text = path.read_text()
        content = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as error:
        raise DatasetError(f"{path}: cannot be parsed: {error}") from error
    if not isinstance(content, dict):
        raise DatasetError(f"{path}: expected a mapping with a 'classes' list")
    classes = content.get("classes")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise DatasetError(f"{path}: 'classes' must be a non-empty list of names, got {classes!r}")
    if len(classes) > 255:
        raise DatasetError(
            f"{path}: {len(classes)} classes; at most 255 fit in 8-bit masks with 255 = ignore"
        )
    unknown = sorted(set(content) - set(_META_KEYS))
    if unknown:
        raise DatasetError(f"{path}: unknown key(s) {unknown}; valid keys: {list(_META_KEYS)}")
    palette = content.get("palette")
    if palette is None:
        palette = voc_colormap(len(classes))
    elif not (
        isinstance(palette, list)
        and len(palette) == len(classes)
        and all(
            isinstance(c, list | tuple) and len(c) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in c)
            for c in palette
        )
    ):
        raise DatasetError(f"{path}: 'palette' must be {len(classes)} [R, G, B] triples of 0..255")
    ignore_value = content.get("ignore_index", IGNORE_INDEX)
    if not _is_int(ignore_value):
        raise DatasetError(f"{path}: 'ignore_index' must be an integer (0..255), got {ignore_value!r}")
    reduce_zero = content.get("reduce_zero_label", False)
    if not isinstance(reduce_zero, bool):
        # A quoted 'false' is a non-empty string, i.e. true to Python: it would shift every label silently.
        raise DatasetError(
            f"{path}: 'reduce_zero_label' must be true or false (unquoted), got {reduce_zero!r}"
        )
    name = content.get("name", "folder")
    if not isinstance(name, str) or not name:
        raise DatasetError(f"{path}: 'name' must be a non-empty string, got {name!r}")
    if not reduce_zero and not len(classes) <= ignore_value <= 255:
        raise DatasetError(
            f"{path}: ignore_index {ignore_value} must be in {len(classes)}..255 (not a class)"
        )
    try:
        flip_pairs = check_flip_pairs(content.get("flip_pairs") or (), len(classes), "'flip_pairs'")
    except ValueError as error:
        raise DatasetError(f"{path}: {error} (expected e.g. [[1, 2]] for classes 1 and 2)") from None
    meta = DatasetMeta(
        name=name,
        classes=tuple(classes),
        palette=tuple((int(r), int(g), int(b)) for r, g, b in palette),
        train_scale=_pair(content.get("train_scale"), "train_scale", path),
        test_scale=_pair(content.get("test_scale"), "test_scale", path),
        crop_size=_pair(content.get("crop_size"), "crop_size", path) or (512, 512),
        flip_pairs=flip_pairs,
    )
    return meta, {"ignore_value": ignore_value, "reduce_zero_label": reduce_zero}


@register_dataset("folder")
class FolderDataset(FileSegmentationDataset):
    """Images and masks with matching stems plus a small metadata file (see the module docstring)."""

    splits = ()  # any name: resolved from the folder itself

    def __init__(
        self,
        root: str | Path,
        split: str = "all",
        *,
        transforms: PairTransform | None = None,
        strict: bool = True,
    ) -> None:
        if not Path(root).expanduser().is_dir():
            raise DatasetError(f"folder: root directory {root} does not exist")
        self.meta, options = read_folder_meta(Path(root).expanduser())
        if options["reduce_zero_label"]:
            self._mapping = reduce_zero_label(self.meta.num_classes)
        else:
            self._mapping = index_labels(self.meta.num_classes, options["ignore_value"])
        super().__init__(root, split, transforms=transforms, strict=strict)

    def list_split(self, root: Path, split: str) -> Listing:
        if (root / "images" / split).is_dir():
            image_dir, mask_dir = root / "images" / split, root / "masks" / split
            return self._pair(root, list_files(image_dir), list_files(mask_dir, (".png",)), f"{split}/")
        images, masks = list_files(root / "images"), list_files(root / "masks", (".png",))
        split_file = root / "splits" / f"{split}.txt"
        if split_file.is_file():
            wanted = {line.strip() for line in split_file.read_text().splitlines() if line.strip()}
            if not wanted:
                raise DatasetError(
                    f"folder: split {split!r} under {root} is empty: {split_file.name} lists no image stems "
                    f"(found {len(images)} images, {len(masks)} masks in images/, masks/)"
                )
            listing = self._pair(root, [p for p in images if p.stem in wanted], masks, "")
            # masks of other splits are not this split's problem; listed stems without an image are
            listing.problems = [(p, r) for p, r in listing.problems if p.stem in wanted]
            found = {p.stem for p in images}
            listing.problems += [
                (root / "images" / stem, f"listed in {split_file.name} but no image has this stem")
                for stem in sorted(wanted - found)
            ]
            listing.found_labels = sum(p.stem in wanted for p in masks)
            return listing
        if split == "all":
            return self._pair(root, images, masks, "")
        available = sorted({p.stem for p in (root / "splits").glob("*.txt")} | _subfolders(root / "images"))
        raise DatasetError(
            f"folder: split {split!r} not found under {root}: expected images/{split}/ or splits/{split}.txt "
            f"(available: {', '.join(['all', *available])})"
        )

    def _pair(self, root: Path, images: list[Path], masks: list[Path], sub: str) -> Listing:
        return pair_by_key(
            {p.stem: p for p in images},
            {p.stem: p for p in masks},
            image_pattern=f"images/{sub}*.{{png,jpg,...}}",
            label_pattern=f"masks/{sub}<stem>.png",
            root=root,
            dataset=self.name,
        )

    def label_mapping(self, sample: Sample) -> LabelMapping:
        return self._mapping


def _subfolders(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.is_dir()} if directory.is_dir() else set()
