"""Training data: datasets and transforms from the config, and a data order that is reproducible,
shardable and resumable at any batch.

- :class:`ResumableSampler` shuffles the dataset once per epoch with a generator seeded by (seed, epoch) and
  deals global batch ``s`` (``world_size`` x ``batch_size`` consecutive indices of the permutation) out in
  contiguous chunks, one per rank: the images of a step are the same whatever the number of processes,
  which is what makes a 2-process run equal to a 1-process run with the same global batch. It can start in
  the middle of an epoch (``set_position``), so a resumed run sees exactly the batches it would have seen.
  Incomplete global batches at the end of an epoch are dropped. (It plays the role of
  ``DistributedSampler`` but shards by batch and can resume mid-epoch.)
- :class:`SeededDataset` draws each sample's random augmentation from a generator seeded by (seed, epoch,
  index) alone, so augmentations do not depend on worker processes, prefetching or interruptions.
- :func:`build_train_loader` puts them together in a DataLoader that never draws from the global torch
  generator (so resuming does not shift the model's random streams).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ccnet.config import ConfigError, DataConfig
from ccnet.data import (
    DatasetError,
    DatasetMeta,
    FileSegmentationDataset,
    SegmentationDataset,
    authors_train_transforms,
    collate,
    dataset_class,
    dataset_options,
    eval_transforms,
    get_dataset,
    train_transforms,
)
from ccnet.engine.evaluate import raw_pair
from ccnet.preprocess import AUTHORS_BGR, Preprocess

__all__ = [
    "INSTANCE_DATASETS",
    "InstanceDataMeta",
    "ResumableSampler",
    "SeededDataset",
    "build_datasets",
    "build_instance_datasets",
    "build_instance_split",
    "build_split",
    "build_train_loader",
    "check_has_class_pixels",
    "derive_seed",
    "train_transforms_for",
]


def derive_seed(*keys: int) -> int:
    """A 63-bit seed that depends on the non-negative integers ``keys`` only (their order and number too)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0] >> np.uint64(1))


class ResumableSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, sample seed)`` pairs for this rank, batch after batch (see the module docstring).

    Args:
        dataset_size: number of samples.
        batch_size: per-process batch size.
        rank, world_size: this process and the number of processes.
        seed: shuffling and augmentation seed (the same on every rank).
    """

    def __init__(
        self, dataset_size: int, batch_size: int, *, rank: int = 0, world_size: int = 1, seed: int = 0
    ):
        super().__init__()
        self.dataset_size, self.batch_size = dataset_size, batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"the training set has {dataset_size} samples, fewer than one global batch "
                f"({world_size} x {batch_size})"
            )
        self.epoch, self.start_batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return self.dataset_size // (self.batch_size * self.world_size)

    def set_position(self, epoch: int, batch: int) -> None:
        """Start the next iteration at batch ``batch`` of epoch ``epoch`` (a full epoch rolls over)."""
        epoch, batch = epoch + batch // self.batches_per_epoch, batch % self.batches_per_epoch
        self.epoch, self.start_batch = epoch, batch

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        order = torch.randperm(self.dataset_size, generator=generator).tolist()
        global_batch = self.batch_size * self.world_size
        for step in range(self.start_batch, self.batches_per_epoch):
            first = step * global_batch + self.rank * self.batch_size
            for index in order[first : first + self.batch_size]:
                yield index, derive_seed(self.seed, self.epoch, index)


class SeededDataset(Dataset):
    """Wraps a dataset: item ``(index, seed)`` is ``dataset[index]`` with the global torch generator seeded
    by ``seed`` during the call and restored afterwards (torchvision transforms draw from it)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


# --- datasets and transforms from the config ------------------------------------------------------------
def train_transforms_for(data: DataConfig, meta: DatasetMeta, preprocess: Preprocess) -> Any:
    """The training pipeline ``data.augment`` names, with the config's sizes or the dataset's defaults,
    normalising images as the model expects (``model.preprocess``)."""
    crop = data.crop_size or meta.crop_size
    if data.augment == "none":
        return eval_transforms(None, normalization=preprocess)
    if data.augment == "authors":
        if preprocess != AUTHORS_BGR:
            raise ConfigError(
                "data.augment='authors' normalises images the authors' way (BGR, mean only); use it with a "
                "model expecting that input (ccnet_r101_d8_authors) or choose data.augment='mmseg'"
            )
        return authors_train_transforms(crop, ignore_index=meta.ignore_index, flip_pairs=meta.flip_pairs)
    return train_transforms(
        crop,
        scale=data.train_scale or meta.train_scale,
        ratio_range=data.ratio_range,
        cat_max_ratio=data.cat_max_ratio,
        photometric=data.photometric,
        normalization=preprocess,
        ignore_index=meta.ignore_index,
        flip_pairs=meta.flip_pairs,
    )


def build_datasets(data: DataConfig) -> tuple[SegmentationDataset, SegmentationDataset]:
    """Training and validation datasets; the validation items hold raw ``uint8`` images (see
    :func:`ccnet.engine.evaluate.raw_pair`). Set the training transforms with :func:`train_transforms_for`
    once the model (and so its input normalisation) is known.

    Raises:
        ConfigError: an unknown ``data.dataset``, an option the dataset does not take or a value it refuses
            (naming ``data.options`` / ``data.val_options`` and the options it accepts).
        DatasetError: a missing or bad dataset copy, or a split whose sampled labels are all ignore
            (see :func:`check_has_class_pixels`).
    """
    try:
        reads_files = issubclass(dataset_class(data.dataset), FileSegmentationDataset)
    except ValueError as error:  # unknown name: the message lists the registered ones
        raise ConfigError(f"data.dataset: {error}") from None
    if reads_files and data.root is None:
        raise ConfigError(
            f"data.root: dataset {data.dataset!r} is read from files; set data.root=DIR (its directory)"
        )
    train_set = build_split(data, data.train_split, evaluation=False)
    val_set = build_split(data, data.val_split, evaluation=True)
    check_has_class_pixels(train_set, data.train_split)
    check_has_class_pixels(val_set, data.val_split)
    return train_set, val_set


def build_split(data: DataConfig, split: str, *, evaluation: bool) -> SegmentationDataset:
    """One split of ``data.dataset``: training items with ``data.options``, or evaluation items (raw
    ``uint8`` images, see :func:`ccnet.engine.evaluate.raw_pair`) with ``data.options`` updated by
    ``data.val_options``.

    Raises:
        ConfigError: an option the dataset does not take or a value it refuses (naming the config key and the
            options it accepts).
        DatasetError: a missing or bad dataset copy.
    """
    accepted = dataset_options(data.dataset)
    _check_option_names(data.dataset, "data.options", data.options, accepted)
    if not evaluation:
        with _options_named(data.dataset, "data.options", data.options):
            return get_dataset(data.dataset, data.root, split, **data.options)
    _check_option_names(data.dataset, "data.val_options", data.val_options, accepted)
    options = {**data.options, **data.val_options}
    with _options_named(data.dataset, "data.val_options", options):
        return get_dataset(data.dataset, data.root, split, transforms=raw_pair, **options)


def _check_option_names(dataset: str, key: str, options: dict[str, Any], accepted: list[str]) -> None:
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = f"its options: {', '.join(accepted)}" if accepted else "it takes no options"
        raise ConfigError(f"{key}.{unknown[0]}: dataset {dataset!r} has no option {unknown[0]!r}; {takes}")


@contextlib.contextmanager
def _options_named(dataset: str, key: str, options: dict[str, Any]) -> Iterator[None]:
    """Turn a dataset's refusal of an option value (TypeError / ValueError, not a bad copy on disk) into a
    ConfigError naming the config key."""
    try:
        yield
    except DatasetError:
        raise
    except (TypeError, ValueError) as error:
        if not options:
            raise
        raise ConfigError(f"{key}: dataset {dataset!r} refuses {options}: {error}") from error


# Labelled items read to decide that a split has class pixels at all: evenly spaced over the split, so that
# a sorted dataset whose first files are unlabelled is not refused; every item of a split this small.
CLASS_PIXEL_SAMPLES = 32


def check_has_class_pixels(
    dataset: SegmentationDataset, split: str, samples: int = CLASS_PIXEL_SAMPLES
) -> None:
    """Raise :class:`DatasetError` when every label pixel of up to ``samples`` items of ``dataset`` (evenly
    spaced; all of a small split) is ignore: training would see a zero loss and evaluation end with mIoU
    nan. Stops at the first item with a class pixel, so a normal dataset costs one label read."""
    count = len(dataset)
    if count == 0:
        return
    indices = sorted({int(i) for i in np.linspace(0, count - 1, num=min(samples, count))})
    for index in indices:
        _, label = dataset.load_raw(index)
        if (label != dataset.ignore_index).any():
            return
    where = f" under {dataset.root}" if getattr(dataset, "root", None) is not None else ""
    checked = "every item" if len(indices) == count else f"{len(indices)} items spread over its {count}"
    raise DatasetError(
        f"dataset {dataset.name!r} split {split!r}{where}: every label pixel of {checked} is ignore "
        f"({dataset.ignore_index} after the dataset's label mapping), nothing to train or evaluate on; check "
        f"the masks and the ignore settings (ccnet data check {dataset.name} ... --split {split})"
    )


def _seed_worker(seed: int, rank: int, worker_id: int) -> None:
    """Worker processes: NumPy / Python generators from (seed, rank, worker); torch's is seeded per sample."""
    worker_seed = derive_seed(seed, rank, worker_id)
    np.random.seed(worker_seed % 2**32)
    random.seed(worker_seed)


def build_train_loader(
    dataset: Dataset,
    sampler: ResumableSampler,
    *,
    num_workers: int,
    seed: int,
    rank: int,
    device: torch.device,
    collate_fn: Callable[[list[Any]], Any] = collate,
) -> DataLoader:
    """Batches for ``sampler`` (``collate`` dicts; instance data: ``collate_instances`` lists); persistent
    workers, per-sample augmentation seeds."""
    return DataLoader(
        SeededDataset(dataset),
        batch_size=sampler.batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        worker_init_fn=partial(_seed_worker, seed, rank),
        generator=torch.Generator(),  # never the global generator: resuming must not shift its stream
    )


# --- instance segmentation data ------------------------------------------------------------------------
INSTANCE_DATASETS = ("instance", "coco")  # the built-in instance task, COCO-format sets


@dataclass(frozen=True)
class InstanceDataMeta:
    """What the training loop needs to know of an instance dataset: its name and classes (background
    first, as torchvision counts them) and a colour per class."""

    name: str
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        from ccnet.data.meta import voc_colormap

        return voc_colormap(len(self.classes))


def build_instance_split(data: DataConfig, split: str, *, evaluation: bool) -> Any:
    """One split of an instance dataset (``data.dataset`` ``"instance"`` or ``"coco"``): samples as in
    :mod:`ccnet.data.coco`; training samples flipped at random unless ``data.augment='none'`` (the detector
    resizes them itself, to ``data.min_size`` / ``data.max_size``). ``"coco"`` reads ``data.root`` in the
    official layout, or ``data.options`` ``ann_file`` and ``image_dir`` (per split: ``data.val_options``).

    Raises:
        ConfigError: an unknown dataset or option (naming the config key). DatasetError: a missing or
            malformed COCO copy (naming the file).
    """
    options = {**data.options, **(data.val_options if evaluation else {})}
    key = "data.val_options" if evaluation and data.val_options else "data.options"
    flip = not evaluation and data.augment != "none"
    if data.dataset == "instance":
        from ccnet.data.instance_task import InstanceTaskDataset

        with _options_named(data.dataset, key, options):
            return InstanceTaskDataset(split, flip=flip, **options)
    if data.dataset == "coco":
        from torchvision.transforms import v2

        from ccnet.data.coco import coco_dataset

        if data.root is None and "ann_file" not in options:
            raise ConfigError(
                "data.root: dataset 'coco' is read from files; set data.root=DIR (COCO 2017's official "
                "layout) or data.options.ann_file=FILE and data.options.image_dir=DIR"
            )
        transforms = v2.RandomHorizontalFlip(0.5) if flip else None
        # the training references leave out images without an instance; evaluation keeps them
        options = {"drop_empty": not evaluation, **options}
        with _options_named(data.dataset, key, options):
            return coco_dataset(data.root, split, transforms=transforms, **options)
    raise ConfigError(
        f"data.dataset: {data.dataset!r} is no instance dataset; allowed: {list(INSTANCE_DATASETS)}"
    )


def build_instance_datasets(data: DataConfig) -> tuple[Any, Any, InstanceDataMeta]:
    """Training and validation splits of an instance dataset and its :class:`InstanceDataMeta`.

    Raises:
        ConfigError / DatasetError: see :func:`build_instance_split`; also splits with other classes.
    """
    train_set = build_instance_split(data, data.train_split, evaluation=False)
    val_set = build_instance_split(data, data.val_split, evaluation=True)
    if tuple(train_set.classes) != tuple(val_set.classes):
        raise DatasetError(
            f"dataset {data.dataset!r}: split {data.train_split!r} has classes {list(train_set.classes)} but "
            f"{data.val_split!r} has {list(val_set.classes)}"
        )
    return train_set, val_set, InstanceDataMeta(data.dataset, tuple(train_set.classes))
