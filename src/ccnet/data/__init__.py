"""Datasets, class metadata and paired transforms for semantic segmentation.

>>> from ccnet.data import get_dataset, collate
>>> ds = get_dataset()                         # the built-in procedural "context" task, no files needed
>>> item = ds[0]  # {"image": (3, 64, 64) float32, "mask": (64, 64) int64, "meta": {...}}
>>> ds.classes
('background', 'red', 'green', 'blue')

File datasets read their official layouts: ``get_dataset("cityscapes", "/data/cityscapes", "val")``; see
:mod:`ccnet.data.datasets` for layouts and label conventions, :mod:`ccnet.data.folder` for your own data and
:mod:`ccnet.data.video` for CamVid clips (``get_dataset("camvid_clips", root, "train", clip_length=5)``).
"""

from ccnet.data.base import (
    FileSegmentationDataset,
    Sample,
    SegmentationDataset,
    collate,
    dataset_class,
    dataset_options,
    get_dataset,
    list_datasets,
    register_dataset,
)
from ccnet.data.check import CheckReport, check_dataset, format_report
from ccnet.data.datasets import ADE20K, LIP, CamVid, Cityscapes, FoodSeg103, PascalVOC
from ccnet.data.files import DatasetError, read_image, read_label
from ccnet.data.folder import FolderDataset
from ccnet.data.labels import LabelMapping
from ccnet.data.meta import IGNORE_INDEX, DatasetMeta
from ccnet.data.synthetic import ContextConfig, ContextDataset, ContextVideoDataset, HandedDataset
from ccnet.data.transforms import (
    authors_train_transforms,
    default_transforms,
    eval_transforms,
    train_transforms,
)
from ccnet.data.video import CamVidClips

__all__ = [
    "ADE20K",
    "IGNORE_INDEX",
    "LIP",
    "CamVid",
    "CamVidClips",
    "CheckReport",
    "Cityscapes",
    "ContextConfig",
    "ContextDataset",
    "ContextVideoDataset",
    "DatasetError",
    "DatasetMeta",
    "FileSegmentationDataset",
    "FolderDataset",
    "FoodSeg103",
    "HandedDataset",
    "LabelMapping",
    "PascalVOC",
    "Sample",
    "SegmentationDataset",
    "authors_train_transforms",
    "check_dataset",
    "collate",
    "dataset_class",
    "dataset_options",
    "default_transforms",
    "eval_transforms",
    "format_report",
    "get_dataset",
    "list_datasets",
    "read_image",
    "read_label",
    "register_dataset",
    "train_transforms",
]
