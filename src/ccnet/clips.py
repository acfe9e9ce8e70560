"""Conventions for video clips shared by the video datasets, the video models and their evaluation."""

from __future__ import annotations

__all__ = ["centre_index"]


def centre_index(clip_length: int) -> int:
    """Clip index of the frame a clip of ``clip_length`` frames is labelled by: ``T // 2`` (the middle one
    for odd lengths, the later of the two middle ones for even lengths). The model's ``frames="centre"``
    mode and the evaluation of such models use the same index."""
    if clip_length < 1:
        raise ValueError(f"centre_index: a clip has at least one frame, got {clip_length}")
    return clip_length // 2
