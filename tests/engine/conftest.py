"""Shared helpers of the engine tests: tiny run configs on the built-in context dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccnet.config import Config, load_config

# A tiny, fast run: the default config's model and data, few samples, one thread, no progress bar.
TINY = [
    "data.options.length=64",
    "data.val_options.length=8",
    "data.num_workers=0",
    "train.num_threads=1",
    "train.progress=false",
    "train.val_interval=0",
    "train.log_interval=1000",
]


def tiny_overrides(work_dir: Path, *extra: str) -> list[str]:
    return [*TINY, f"train.work_dir={work_dir}", *extra]


def tiny_config(work_dir: Path, *extra: str) -> Config:
    return load_config("default", tiny_overrides(work_dir, *extra))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A 30-iteration tiny run (shared by the checkpoint, eval and predict tests)."""
    from ccnet.engine.train import train

    work_dir = tmp_path_factory.mktemp("trained") / "run"
    return train(
        tiny_config(work_dir, "train.max_iters=30", "train.checkpoint_interval=10", "train.keep_last=2")
    )
