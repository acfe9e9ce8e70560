"""Dataset base classes, the sample format, the registry and :func:`collate`.

A dataset item (``dataset[i]``) is a dict::

    {"image": float32 (3, H, W) normalised,        # (T, 3, H, W) for video datasets
     "mask":  int64 (H, W), 255 = ignore,          # (T, H, W) for video datasets
     "meta":  {"dataset": str, "index": int, "image_path": str | None, "label_path": str | None,
               "ori_size": (H, W), "has_label": bool, ...dataset-specific keys}}

``transforms`` (``image, mask = transforms(image, mask)`` on ``tv_tensors.Image`` ``uint8`` /
``tv_tensors.Mask`` ``uint8``, see :mod:`ccnet.data.transforms`) defaults to normalisation only.
``dataset.load_raw(i)`` gives the untransformed pair: ``uint8`` ``(H, W, 3)`` RGB and ``int64`` ``(H, W)``
training ids (all 255 for splits without labels), validated as described in :mod:`ccnet.data.datasets`.

Class-level facts (``dataset.classes``, ``palette``, ``ignore_index``, ``train_scale``, ``test_scale``,
``crop_size``) come from ``dataset.meta``, a :class:`~ccnet.data.meta.DatasetMeta` (not to be confused with
an item's per-sample ``"meta"`` dict).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ccnet.data.files import DatasetError, read_image, read_label
from ccnet.data.labels import LabelMapping
from ccnet.data.meta import DatasetMeta
from ccnet.data.transforms import eval_transforms

PairTransform = Callable[[tv_tensors.Image, tv_tensors.Mask], tuple[torch.Tensor, torch.Tensor]]


class SegmentationDataset(Dataset):
    """Base of every dataset: metadata attributes, ``load_raw`` -> transforms -> item dict.

    Subclasses implement ``__len__``, ``load_raw(index)`` and ``sample_meta(index)``.
    """

    meta: DatasetMeta

    def __init__(self, transforms: PairTransform | None = None) -> None:
        self.transforms = transforms if transforms is not None else eval_transforms()

    # metadata, read from ``self.meta`` so a dataset can also be built with its own (folder format)
    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def classes(self) -> tuple[str, ...]:
        return self.meta.classes

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        return self.meta.palette

    @property
    def num_classes(self) -> int:
        return self.meta.num_classes

    @property
    def ignore_index(self) -> int:
        return self.meta.ignore_index

    @property
    def train_scale(self) -> tuple[int, int] | None:
        return self.meta.train_scale

    @property
    def test_scale(self) -> tuple[int, int] | None:
        return self.meta.test_scale

    @property
    def crop_size(self) -> tuple[int, int]:
        return self.meta.crop_size

    def __len__(self) -> int:
        raise NotImplementedError

    def load_raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``uint8`` ``(H, W, 3)`` RGB image and ``int64`` ``(H, W)`` training ids (255 = ignore)."""
        raise NotImplementedError

    def sample_meta(self, index: int) -> dict[str, Any]:
        raise NotImplementedError

    def load_with_meta(self, index: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """``load_raw`` and ``sample_meta`` together (generated datasets override it to generate once)."""
        image, label = self.load_raw(index)
        return image, label, self.sample_meta(index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {self!r}")
        image, label, meta = self.load_with_meta(index)
        # (H, W, 3) -> (3, H, W); (T, H, W, 3) -> (T, 3, H, W); masks go through the transforms as uint8
        pixels = torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, -3)))
        mask = torch.from_numpy(label.astype(np.uint8))
        image_t, mask_t = self.transforms(tv_tensors.Image(pixels), tv_tensors.Mask(mask))
        meta["ori_size"] = tuple(label.shape[-2:])
        return {
            "image": image_t.as_subclass(torch.Tensor),
            "mask": mask_t.as_subclass(torch.Tensor).to(torch.int64),
            "meta": meta,
        }


@dataclass(frozen=True)
class Sample:
    """One image file and its label file (``None`` for splits without labels)."""

    image: Path
    label: Path | None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. CamVid's sequence and frame number


@dataclass
class Listing:
    """What a dataset found on disk for one split: paired samples and the unpaired files."""

    samples: list[Sample]
    found_images: int
    found_labels: int
    problems: list[tuple[Path, str]]  # (file, what is wrong) for files that could not be paired


class FileSegmentationDataset(SegmentationDataset):
    """A dataset read from image/label files on disk.

    Subclasses implement ``list_split(root, split) -> Listing`` and ``label_mapping(sample)``. Pairing,
    counts and empty splits are checked at construction; a file's content (decoding, image/label sizes, label
    values, colour labels) when it is loaded. ``strict=False`` keeps the paired samples and records unpaired
    files in ``self.problems`` instead of raising (used by ``ccnet data check``).
    """

    splits: tuple[str, ...] = ("train", "val")

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        transforms: PairTransform | None = None,
        strict: bool = True,
    ) -> None:
        super().__init__(transforms)
        self.root = Path(root).expanduser()
        self.split = split
        if not self.root.is_dir():
            raise DatasetError(f"{self.name}: root directory {self.root} does not exist")
        if self.splits and split not in self.splits:
            raise DatasetError(f"{self.name}: unknown split {split!r}; expected one of {self.splits}")
        listing = self.list_split(self.root, split)
        self.found_images, self.found_labels = listing.found_images, listing.found_labels
        self.problems = listing.problems
        if self.problems and strict:
            raise DatasetError(_describe_problems(f"{self.name} {split} under {self.root}", listing))
        if not listing.samples:
            raise DatasetError(
                f"{self.name}: split {split!r} under {self.root} is empty "
                f"(found {listing.found_images} images, {listing.found_labels} labels)"
            )
        self.samples = listing.samples

    def list_split(self, root: Path, split: str) -> Listing:
        raise NotImplementedError

    def label_mapping(self, sample: Sample) -> LabelMapping:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, {len(self)} samples)"

    def load_raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        sample = self.samples[index]
        image = read_image(sample.image)
        if sample.label is None:
            return image, np.full(image.shape[:2], self.ignore_index, dtype=np.int64)
        stored = read_label(sample.label)
        if stored.shape != image.shape[:2]:
            (h, w), (lh, lw) = image.shape[:2], stored.shape
            raise DatasetError(f"image {sample.image} is {h}x{w} but its label {sample.label} is {lh}x{lw}")
        return image, self.label_mapping(sample)(stored, sample.label)

    def sample_meta(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        return {
            "dataset": self.name,
            "index": index,
            "image_path": str(sample.image),
            "label_path": None if sample.label is None else str(sample.label),
            "has_label": sample.label is not None,
            **sample.extra,
        }


def pair_by_key(
    images: dict[str, Path],
    labels: dict[str, Path],
    *,
    image_pattern: str,
    label_pattern: str,
    root: Path,
    dataset: str,
) -> Listing:
    """Pair images and labels that share a key (sorted by key); unpaired files become problems.

    Raises :class:`DatasetError` naming ``image_pattern`` when no image was found at all.
    """
    if not images:
        raise DatasetError(
            f"{dataset}: no images matching {image_pattern} under {root} "
            f"(found 0 images, {len(labels)} labels matching {label_pattern})"
        )
    problems = [
        (images[k], f"image has no label matching {label_pattern}") for k in sorted(images) if k not in labels
    ]
    problems += [
        (labels[k], f"label has no image matching {image_pattern}") for k in sorted(labels) if k not in images
    ]
    samples = [Sample(images[k], labels[k]) for k in sorted(images) if k in labels]
    return Listing(samples, len(images), len(labels), problems)


def _describe_problems(where: str, listing: Listing, limit: int = 5) -> str:
    lines = [f"{p}: {reason}" for p, reason in listing.problems[:limit]]
    more = len(listing.problems) - limit
    if more > 0:
        lines.append(f"... and {more} more")
    # One line: it ends up as the single error line of a command.
    return (
        f"{where}: {len(listing.problems)} unpaired files (found {listing.found_images} images, "
        f"{listing.found_labels} labels): " + "; ".join(lines)
    )


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items into ``{"image": (B, ...), "mask": (B, ...), "meta": [meta, ...]}``.

    Items must have equal image and mask shapes (use a cropping/padding transform, or batch size 1 for
    evaluation at original sizes).
    """
    shapes = {(tuple(item["image"].shape), tuple(item["mask"].shape)) for item in batch}
    if len(shapes) > 1:
        raise ValueError(
            f"cannot stack items of different sizes {sorted(shapes)}; crop/pad them to one size or use "
            "batch_size=1"
        )
    return {
        "image": torch.stack([item["image"] for item in batch]),
        "mask": torch.stack([item["mask"] for item in batch]),
        "meta": [item["meta"] for item in batch],
    }


# --- registry ----------------------------------------------------------------------------------------
_REGISTRY: dict[str, type[SegmentationDataset]] = {}
DEFAULT_DATASET = "context"


def register_dataset(name: str) -> Callable[[type[SegmentationDataset]], type[SegmentationDataset]]:
    """Class decorator: make a dataset available as ``get_dataset(name, ...)``."""

    def register(cls: type[SegmentationDataset]) -> type[SegmentationDataset]:
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} is already registered")
        _REGISTRY[name] = cls
        return cls

    return register


def list_datasets() -> list[str]:
    """Names accepted by :func:`get_dataset`."""
    return sorted(_REGISTRY)


def dataset_class(name: str) -> type[SegmentationDataset]:
    """The class registered as ``name``; unknown names raise a ValueError listing the valid ones."""
    if name.lower() not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(list_datasets())}")
    return _REGISTRY[name.lower()]


# Arguments every dataset class takes that are not per-dataset options (set by the code, not the config).
_STANDARD_ARGUMENTS = {"self", "root", "split", "transforms", "strict"}


def dataset_options(name_or_class: str | type[SegmentationDataset]) -> list[str]:
    """The keyword options a dataset class accepts (``data.options`` of a run config), sorted: its named
    ``__init__`` arguments, following ``**kwargs`` into its bases, and the ``extra_options`` it declares for
    what its own ``**kwargs`` take."""
    cls = dataset_class(name_or_class) if isinstance(name_or_class, str) else name_or_class
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters.values()
        names |= {
            p.name
            for p in parameters
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in _STANDARD_ARGUMENTS
        }
        names |= set(klass.__dict__.get("extra_options", ()))
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return sorted(names)


def get_dataset(
    name: str | None = None, root: str | Path | None = None, split: str = "train", **kwargs: Any
) -> SegmentationDataset:
    """Build a dataset by name; with no name, the built-in procedural ``"context"`` dataset.

    Args:
        name: one of :func:`list_datasets` (``None`` = ``"context"``).
        root: dataset directory in its official layout (not used by the procedural datasets).
        split: ``"train"``, ``"val"``, ... (each dataset lists its ``splits``).
        **kwargs: passed to the dataset class (``transforms``, ``strict``, generator options, ...).
    """
    key = (name or DEFAULT_DATASET).lower()
    cls = dataset_class(key)
    if issubclass(cls, FileSegmentationDataset):
        if root is None:
            raise DatasetError(f"dataset {key!r} needs root= (the directory holding its files)")
        return cls(root, split, **kwargs)
    if root is not None:
        raise ValueError(f"dataset {key!r} is generated procedurally and takes no root (got {root!r})")
    return cls(split=split, **kwargs)
