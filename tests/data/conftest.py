"""Fixtures: fake dataset trees in each official layout (built by tests/data/fakes.py) and a quiet torch."""

from __future__ import annotations

import pytest

from tests.data import fakes


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every data test runs on one thread (tests/conftest.py)."""


@pytest.fixture
def cityscapes_root(tmp_path):
    return fakes.make_cityscapes(tmp_path / "cityscapes")


@pytest.fixture
def ade20k_root(tmp_path):
    return fakes.make_ade20k(tmp_path / "ade")


@pytest.fixture
def voc_root(tmp_path):
    return fakes.make_voc(tmp_path / "voc")


@pytest.fixture
def lip_root(tmp_path):
    return fakes.make_lip(tmp_path / "lip")


@pytest.fixture
def camvid_root(tmp_path):
    return fakes.make_camvid(tmp_path / "camvid")


@pytest.fixture
def folder_root(tmp_path):
    return fakes.make_folder(tmp_path / "mydata")
