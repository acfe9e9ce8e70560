"""Where a training run writes: a new run directory, or the one a resumed run continues in."""

from __future__ import annotations

import time
from pathlib import Path

from ccnet.config import Config
from ccnet.engine.checkpoint import CheckpointManager
from ccnet.engine.dist import DistContext, broadcast_object
from ccnet.engine.errors import TrainingError

__all__ = ["resolve_run_dir"]


def resolve_run_dir(config: Config, resume: bool | str | Path, ctx: DistContext) -> tuple[Path, Path | None]:
    """(run directory, checkpoint to resume from or None)."""
    explicit = Path(config.train.work_dir) if config.train.work_dir else None
    if resume and not isinstance(resume, bool):
        target = Path(resume)
        checkpoint = CheckpointManager(target).latest() if target.is_dir() else target
        if checkpoint is None or not checkpoint.is_file():
            raise TrainingError(f"--resume {target}: no checkpoint found there")
        return explicit or checkpoint.parent, checkpoint
    if resume:
        runs = [explicit] if explicit else sorted((Path("runs") / config.name).glob("*"), reverse=True)
        for run in runs:
            checkpoint = CheckpointManager(run).latest()
            if checkpoint is not None:
                return run, checkpoint
        where = explicit or Path("runs") / config.name
        raise TrainingError(f"--resume: no checkpoint to resume from under {where}")
    if explicit is not None:
        existing = CheckpointManager(explicit).latest()
        if existing is not None:
            raise TrainingError(
                f"train.work_dir {explicit} already holds checkpoints ({existing.name}); pass --resume to "
                "continue that run, or choose another train.work_dir"
            )
        return explicit, None
    stamp = broadcast_object(time.strftime("%Y%m%d-%H%M%S"), ctx)
    return Path("runs") / config.name / stamp, None
