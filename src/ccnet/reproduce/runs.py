"""Training runs of the demos: the overrides every run shares and a pool of one-thread worker processes."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch

__all__ = ["run_overrides", "run_tasks"]

Task = dict[str, Any]
Row = dict[str, Any]


def run_overrides(seed: int, work_dir: Path) -> list[str]:
    """Config overrides every demo run shares: the seed, a CPU process with one thread and no data workers,
    no intermediate validation or checkpoints, no progress bar, files under ``work_dir``."""
    return [
        f"train.seed={seed}",
        "train.val_interval=0",
        "train.checkpoint_interval=0",
        "train.keep_last=1",
        "train.progress=false",
        "train.num_threads=1",
        "train.device=cpu",
        f"train.work_dir={work_dir}",
        "data.num_workers=0",
    ]


def _one_thread() -> None:
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def run_tasks(
    tasks: list[Task],
    workers: int,
    on_done: Callable[[Row], None] | None,
    run: Callable[[Task], Row],
) -> list[Row]:
    """``run`` (a module-level function) on every task: ``workers`` spawned processes with one thread each,
    or in this process if 0. Returns the rows in completion order; ``on_done`` sees each as it arrives.

    Spawned workers re-import the calling script: call this from a script under
    ``if __name__ == "__main__":`` (the ``ccnet`` command is).
    """
    rows: list[Row] = []
    if workers <= 0:
        saved = torch.get_num_threads()
        try:
            for task in tasks:
                rows.append(run(task))
                if on_done:
                    on_done(rows[-1])
        finally:
            torch.set_num_threads(saved)
        return rows
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_one_thread) as pool:
        futures = [pool.submit(run, task) for task in tasks]
        for future in as_completed(futures):
            rows.append(future.result())
            if on_done:
                on_done(rows[-1])
    return rows
