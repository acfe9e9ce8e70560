"""What a training run shows and records while it runs (rank 0): a progress bar, periodic loss lines in the
log and, when enabled, TensorBoard scalars."""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm import tqdm

from ccnet.config import Config

__all__ = ["TrainingLog"]

log = logging.getLogger("ccnet.engine.train")


class TrainingLog:
    """Rank 0's view of the run: a progress bar (loss, lr, it/s, ETA), the mean losses logged every
    ``log_interval`` iterations, and TensorBoard scalars when enabled and installed."""

    def __init__(self, config: Config, start: int, main: bool, work_dir: Path) -> None:
        tc = config.train
        self.main, self.max_iters, self.interval = main, tc.max_iters, max(1, tc.log_interval)
        self.bar = tqdm(
            total=tc.max_iters,
            initial=start,
            desc="train",
            unit="it",
            disable=not (tc.progress and main),
            dynamic_ncols=True,
        )
        self.sums: dict[str, float] = {}  # loss sums since the last log line
        self.count = 0
        self.writer = None
        if tc.tensorboard and main:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(work_dir / "tensorboard"))
            except ImportError:
                log.warning(
                    "train.tensorboard=true but the tensorboard package is not installed (pip install "
                    "tensorboard); no scalars are written"
                )

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def step(self, done: int, losses: dict[str, float], lr: float) -> None:
        for key, value in losses.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1
        self.bar.update(1)
        if done % 10 == 0 or done == self.max_iters:
            self.bar.set_postfix(loss=f"{losses['loss']:.4f}", lr=f"{lr:.2e}", refresh=False)
        if done % self.interval == 0 or done == self.max_iters:
            means = {k: v / self.count for k, v in self.sums.items()}
            self.sums, self.count = {}, 0
            if self.main:
                text = "  ".join(f"{k} {v:.4f}" for k, v in means.items())
                log.info("iteration %d/%d  %s  lr %.3e", done, self.max_iters, text, lr)
                self.scalars("train", {**means, "lr": lr}, done)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
