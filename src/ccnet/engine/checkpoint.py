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
moment leaves either the previous file or the new one, never a truncated one. Training writes a checkpoint
only when :func:`first_non_finite` finds every weight and optimiser state finite, so every ``iter_*.pt`` is a
state training can continue from; :func:`load_training_checkpoint` checks a file before a resume uses it.
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

from ccnet.engine.errors import ResumeError

__all__ = [
    "TRAINING_KEYS",
    "CheckpointManager",
    "atomic_save",
    "capture_rng_state",
    "first_non_finite",
    "load_checkpoint",
    "load_training_checkpoint",
    "restore_rng_state",
]

# What a training checkpoint must hold for a resume; the parts whose values must be finite.
TRAINING_KEYS = ("model", "optimizer", "scheduler", "iteration", "epoch", "batch_in_epoch")
FINITE_PARTS = ("model", "extra_modules", "optimizer")

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


def first_non_finite(state: Any, prefix: str = "") -> str | None:
    """The dotted name of the first floating-point tensor in ``state`` (nested dicts / lists) holding a NaN
    or an infinity, or None when all are finite."""
    if isinstance(state, torch.Tensor):
        if state.is_floating_point() or state.is_complex():
            return None if bool(torch.isfinite(state).all()) else prefix or "<tensor>"
        return None
    if isinstance(state, Mapping):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return None
    for key, value in items:
        found = first_non_finite(value, f"{prefix}.{key}" if prefix else str(key))
        if found is not None:
            return found
    return None


def non_finite_training_state(state: Mapping[str, Any]) -> str | None:
    """The first non-finite entry of a training checkpoint's model, loss modules or optimiser state."""
    return first_non_finite({part: state.get(part) for part in FINITE_PARTS})


def load_training_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint to resume training from.

    Raises:
        ResumeError: (one line naming ``path``) missing, exported weights rather than a training checkpoint,
            unreadable (truncated or corrupt), without the training state, or holding non-finite values.
    """
    path = Path(path)
    if not path.is_file():
        raise ResumeError(f"--resume {path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        raise ResumeError(
            f"--resume {path}: this is exported model weights (safetensors), not a training checkpoint; "
            f"resume from an iter_*.pt file or from the run folder {path.parent}"
        )
    try:
        state = load_checkpoint(path, map_location)
    except Exception as err:  # truncated zip, pickle of another program, ...: all mean "cannot read it"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ResumeError(
            f"--resume {path}: cannot read this file as a training checkpoint: it is truncated or not a "
            f"checkpoint ({reason})"
        ) from None
    missing = [key for key in TRAINING_KEYS if not isinstance(state, Mapping) or key not in state]
    if missing:
        raise ResumeError(
            f"--resume {path}: not a training checkpoint of ccnet train (missing {', '.join(missing)}); "
            "resume from an iter_*.pt file or a run folder"
        )
    bad = non_finite_training_state(state)
    if bad is not None:
        raise ResumeError(
            f"--resume {path}: the checkpoint holds non-finite values ({bad}); resume from an earlier "
            "iter_*.pt file of that run"
        )
    return state


class CheckpointManager:
    """Writes ``iter_<N>.pt`` files into ``directory``, keeps the newest ``keep_last`` and ``best.pt``.

    Temporary files left by a killed writer are removed when the manager is created, unless ``clean=False``
    (looking for checkpoints only, e.g. before a resume has been validated: nothing is touched then).
    """

    def __init__(self, directory: str | Path, keep_last: int = 3, *, clean: bool = True) -> None:
        self.directory = Path(directory)
        self.keep_last = max(1, keep_last)
        if clean and self.directory.is_dir():
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

    def set_aside_newer_than(self, iteration: int) -> list[Path]:
        """Rename the ``iter_<N>.pt`` files with N > ``iteration`` to ``iter_<N>.pt.superseded``.

        A run resumed from an older checkpoint than its newest starts a new future: the newer files would
        otherwise be taken for its latest state by the next ``--resume`` and crowd its own checkpoints out
        of the keep-last window. They are kept (renamed), not deleted. Returns the new paths.
        """
        moved = []
        for found, path in self.iteration_checkpoints():
            if found > iteration:
                target = path.with_name(path.name + ".superseded")
                os.replace(path, target)
                moved.append(target)
        if moved:
            _fsync_directory(self.directory)
        return moved

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
