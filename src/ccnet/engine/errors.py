"""Errors that stop a training run, each with a message naming what to change."""

from __future__ import annotations

__all__ = ["NonFiniteLossError", "TrainingError"]


class TrainingError(RuntimeError):
    """Training cannot start or continue (nothing to resume, run directory in use, ...)."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite; the message names the iteration and the last good checkpoint."""
