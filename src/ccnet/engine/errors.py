"""Errors that stop a training run, each with a message naming what to change."""

from __future__ import annotations

__all__ = ["NonFiniteLossError", "ResumeError", "TrainingError"]


class TrainingError(RuntimeError):
    """Training cannot start or continue (nothing to resume, run directory in use, ...)."""


class ResumeError(TrainingError):
    """``--resume`` cannot continue the run it was pointed at (no checkpoint, not a training checkpoint, a
    truncated or non-finite file, a checkpoint that does not fit the model). Raised before anything in the
    run directory is written."""


class NonFiniteLossError(TrainingError):
    """The loss or the trained state became NaN or infinite; the message names the iteration and the newest
    finite checkpoint (checkpoints are only written when every weight and optimiser state is finite)."""
