"""End-to-end validation of a dataset copy (``ccnet data check NAME ROOT``).

:func:`check_dataset` lists the split without failing on unpaired files, then decodes every image and label
(in DataLoader workers when ``workers > 0``) and collects counts, image sizes, a label histogram over the
training classes plus ignore, and every bad file with the reason. :func:`format_report` renders it as text.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ccnet.data.base import FileSegmentationDataset, SegmentationDataset, dataset_class, get_dataset
from ccnet.data.files import DatasetError, image_bit_depth
from ccnet.data.meta import IGNORE_INDEX


@dataclass
class CheckReport:
    """Result of :func:`check_dataset`. ``histogram``: ``int64`` (256,) pixel counts per training id."""

    dataset: str
    split: str
    root: str | None
    classes: tuple[str, ...] = ()
    num_samples: int = 0
    found_images: int = 0
    found_labels: int = 0
    checked: int = 0
    sizes: Counter = field(default_factory=Counter)  # (H, W) -> number of images
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))
    bad_files: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    error: str | None = None  # the dataset could not be listed at all
    labelled: int = 0  # checked samples that have a label file (not all-ignore by construction)
    sixteen_bit: list[str] = field(default_factory=list)  # 16-bit images (scaled to 8 bits when read)

    @property
    def nothing_to_learn(self) -> bool:
        """Every label pixel of the checked labelled samples is ignore: training would see loss 0 and
        evaluation end with mIoU nan."""
        return self.labelled > 0 and not self.histogram[: len(self.classes)].any()

    @property
    def ok(self) -> bool:
        return self.error is None and not self.bad_files and not self.nothing_to_learn

    def summary(self) -> str:
        """One line: why the check failed (empty when it passed)."""
        where = f"{self.dataset} {self.split}" + (f" under {self.root}" if self.root else "")
        if self.error is not None:
            return self.error
        reasons = []
        if self.bad_files:
            path, reason = self.bad_files[0]
            more = f" (and {len(self.bad_files) - 1} more)" if len(self.bad_files) > 1 else ""
            reasons.append(f"{len(self.bad_files)} bad files, first {path}: {reason}{more}")
        if self.nothing_to_learn:
            reasons.append(
                f"every label pixel of the {self.labelled} checked labelled samples is ignore "
                f"({IGNORE_INDEX} after the dataset's label mapping): nothing to train or evaluate on"
            )
        return f"{where}: " + "; ".join(reasons) if reasons else ""


class _CheckedItems(Dataset):
    """Decodes sample ``i`` and summarises it; runs inside DataLoader workers."""

    def __init__(self, dataset: SegmentationDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            image, label = self.dataset.load_raw(index)
        except DatasetError as error:
            return {"error": str(error), "file": _sample_file(self.dataset, index)}
        image_file = _image_file(self.dataset, index)
        return {
            "size": tuple(int(s) for s in image.shape[-3:-1]),
            "histogram": np.bincount(label.reshape(-1), minlength=256)[:256],
            "labelled": _has_label(self.dataset, index),
            "sixteen_bit": image_file if image_file and image_bit_depth(image_file) == 16 else None,
        }


def _image_file(dataset: SegmentationDataset, index: int) -> str | None:
    if isinstance(dataset, FileSegmentationDataset):
        return str(dataset.samples[index].image)
    return None


def _has_label(dataset: SegmentationDataset, index: int) -> bool:
    """Whether sample ``index`` has a label (splits without labels are all-ignore by construction)."""
    if isinstance(dataset, FileSegmentationDataset):
        return dataset.samples[index].label is not None
    return True


def _sample_file(dataset: SegmentationDataset, index: int) -> str:
    if isinstance(dataset, FileSegmentationDataset):
        return str(dataset.samples[index].image)
    return f"{dataset.name}[{index}]"


def _unbatched(item: dict[str, Any]) -> dict[str, Any]:
    return item  # keep numpy arrays and strings as they are (module-level so workers can pickle it)


def check_dataset(
    name: str,
    root: str | Path | None = None,
    split: str = "train",
    *,
    workers: int = 0,
    progress: bool = True,
    limit: int | None = None,
    **kwargs: Any,
) -> CheckReport:
    """Validate ``split`` of dataset ``name`` under ``root``; never raises for bad data, reports it.

    ``limit`` checks only the first ``limit`` samples (the procedural datasets are otherwise checked whole).
    """
    report = CheckReport(dataset=name, split=split, root=None if root is None else str(root))
    try:
        if issubclass(dataset_class(name), FileSegmentationDataset):
            dataset = get_dataset(name, root, split, strict=False, **kwargs)
        else:  # generated: nothing to pair, every sample is checked like a file
            dataset = get_dataset(name, None, split, **kwargs)
    except (DatasetError, ValueError) as error:
        report.error = str(error)
        return report
    report.classes = dataset.classes
    report.num_samples = len(dataset)
    report.found_images = getattr(dataset, "found_images", len(dataset))
    report.found_labels = getattr(dataset, "found_labels", len(dataset))
    report.bad_files += [(str(path), reason) for path, reason in getattr(dataset, "problems", [])]

    count = len(dataset) if limit is None else min(limit, len(dataset))
    items = _CheckedItems(dataset)
    if count < len(dataset):
        items = _Prefix(items, count)
    loader = DataLoader(items, batch_size=None, num_workers=workers, collate_fn=_unbatched)
    for item in tqdm(loader, total=count, desc=f"checking {name} {split}", unit="img", disable=not progress):
        report.checked += 1
        if "error" in item:
            report.bad_files.append((item["file"], item["error"]))
        else:
            report.sizes[item["size"]] += 1
            report.histogram += item["histogram"]
            report.labelled += item["labelled"]
            if item["sixteen_bit"]:
                report.sixteen_bit.append(item["sixteen_bit"])
    return report


class _Prefix(Dataset):
    def __init__(self, items: Dataset, count: int) -> None:
        self.items, self.count = items, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Any:
        return self.items[index]


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    render = [
        "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [header, *rows]
    ]
    return [render[0], line, *render[1:]]


def format_report(report: CheckReport, max_bad: int = 20) -> str:
    """A plain-text summary: counts, sizes, per-class pixel histogram, bad files."""
    title = f"dataset {report.dataset}  split {report.split}" + (
        f"  root {report.root}" if report.root else ""
    )
    lines = [title]
    if report.error is not None:
        return "\n".join([*lines, f"ERROR: {report.error}"])
    lines += [
        "",
        *_table(
            [
                ("images found", str(report.found_images)),
                ("labels found", str(report.found_labels)),
                ("paired samples", str(report.num_samples)),
                ("samples checked", str(report.checked)),
                ("bad files", str(len(report.bad_files))),
            ],
            ("count", "value"),
        ),
        "",
        *_table(
            [(f"{h}x{w}", str(n)) for (h, w), n in report.sizes.most_common(10)],
            ("image size (HxW)", "images"),
        ),
    ]
    if len(report.sizes) > 10:
        lines.append(f"... {len(report.sizes) - 10} more sizes")
    total = int(report.histogram.sum())
    rows = [
        (f"{k} {name}", str(int(report.histogram[k])), f"{100 * report.histogram[k] / max(total, 1):.2f}")
        for k, name in enumerate(report.classes)
    ]
    rows.append((f"{IGNORE_INDEX} ignore", str(int(report.histogram[IGNORE_INDEX])),
                 f"{100 * report.histogram[IGNORE_INDEX] / max(total, 1):.2f}"))  # fmt: skip
    lines += ["", *_table(rows, ("class", "pixels", "%"))]
    if report.sixteen_bit:
        first = report.sixteen_bit[0]
        lines += [
            "",
            f"16-bit images: {len(report.sixteen_bit)} (e.g. {first}); read scaled to 8 bits "
            "(v * 255 / 65535)",
        ]
    if report.nothing_to_learn:
        lines += ["", f"no class pixels: every label pixel is ignore ({IGNORE_INDEX}); nothing to train on"]
    if report.bad_files:
        lines += ["", f"bad files ({len(report.bad_files)}):"]
        lines += [f"  {path}: {reason}" for path, reason in report.bad_files[:max_bad]]
        if len(report.bad_files) > max_bad:
            lines.append(f"  ... and {len(report.bad_files) - max_bad} more")
    verdict = "FAILED: bad files found" if report.bad_files else "FAILED: no class pixels"
    lines += ["", "OK" if report.ok else verdict]
    return "\n".join(lines)
