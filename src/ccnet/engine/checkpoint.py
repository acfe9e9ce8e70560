"""Training checkpoints: atomic writes, keep-last-N + best, RNG states, and the metadata stored with weights.

A checkpoint (``iter_0001500.pt``, ``best.pt``) is a ``torch.save`` dict loadable with ``weights_only=True``:

- ``"meta"``: strings (``arch``, ``num_classes``, and as JSON ``model_overrides``, ``classes``, ``palette``),
  so that ``ccnet eval``, ``ccnet predict`` and ``ccnet.create_model(arch, pretrained=path)`` rebuild the
  model;
- ``"model"``: the model's state dict; ``"optimizer"``, ``"scheduler"``, ``"scaler"``, ``"extra_modules"``
  (loss parameters such as the category consistent projection);
- ``"iteration"`` (completed iterations), ``"epoch"`` and ``"batch_in_epoch"`` (the data position),
  ``"best_miou"``;
- ``"rng"``: one entry per rank with the Python, NumPy, torch CPU and CUDA generator states;
- ``"config"``: the resolved config as a plain dict.

Writes go to a temporary file in the same directory followed by ``os.replace``, so a process killed at any
moment leaves either the previous file or the new one, never a truncated one.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "CheckpointManager",
    "atomic_save",
    "capture_rng_state",
    "load_checkpoint",
    "restore_rng_state",
]

_ITER_FILE = re.compile(r"iter_(\d+)\.pt")
BEST_FILE = "best.pt"


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not supported on every platform / filesystem
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_directory(path.parent)
    return path


def _atomic_link(source: Path, target: Path) -> None:
    """Make ``target`` the same file as ``source`` (hard link, or a copy where links are unsupported)."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        import shutil

        shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    _fsync_directory(target.parent)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :class:`CheckpointManager` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


class CheckpointManager:
    """Writes ``iter_<N>.pt`` files into ``directory``, keeps the newest ``keep_last`` and ``best.pt``.

    Temporary files left by a killed writer are removed when the manager is created.
    """

    def __init__(self, directory: str | Path, keep_last: int = 3) -> None:
        self.directory = Path(directory)
        self.keep_last = max(1, keep_last)
        if self.directory.is_dir():
            for stale in self.directory.glob(".*.tmp-*"):
                stale.unlink(missing_ok=True)

    def iteration_checkpoints(self) -> list[tuple[int, Path]]:
        """(iteration, path) of the ``iter_<N>.pt`` files, oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            match = _ITER_FILE.fullmatch(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)

    def latest(self) -> Path | None:
        checkpoints = self.iteration_checkpoints()
        return checkpoints[-1][1] if checkpoints else None

    @property
    def best(self) -> Path:
        return self.directory / BEST_FILE

    def save(
        self, state: Mapping[str, Any], iteration: int, *, keep: bool = True, best: bool = False
    ) -> Path:
        """Write ``state`` as ``iter_<iteration>.pt`` (when ``keep``) and/or as ``best.pt`` (when ``best``).

        Returns the path written (the iteration file when both).
        """
        if not keep and not best:
            raise ValueError("save: nothing to write (keep=False, best=False)")
        if keep:
            path = atomic_save(state, self.directory / f"iter_{iteration:07d}.pt")
            if best:
                _atomic_link(path, self.best)
            for _, old in self.iteration_checkpoints()[: -self.keep_last]:
                old.unlink(missing_ok=True)
            return path
        return atomic_save(state, self.best)


# --- random generator states ---------------------------------------------------------------------------
def capture_rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's global generators (CPU and every CUDA device)."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# --- models from weight files ------------------------------------------------------------------------
def checkpoint_meta(
    model: nn.Module, *, model_overrides: Mapping[str, Any], classes: tuple[str, ...], palette: Any
) -> dict[str, str]:
    """The string metadata stored with checkpoints and exported weights (see the module docstring)."""
    return {
        "arch": str(getattr(model, "arch", "") or ""),
        "num_classes": str(len(classes)),
        "model_overrides": json.dumps(dict(model_overrides)),
        "classes": json.dumps(list(classes)),
        "palette": json.dumps([list(c) for c in palette]),
    }
