"""Where a training run writes, and which config a resumed run may continue with.

A new run writes into ``train.work_dir`` or a new ``runs/<name>/<time>/`` folder. A resumed run continues
exactly the run the user meant, in its own folder: ``--resume PATH`` that checkpoint or run folder, a bare
``--resume`` ``train.work_dir`` or else the NEWEST folder under ``runs/<name>/``; when that run holds no
checkpoint (it stopped before its first one) the resume is refused, naming the folder, never redirected to
an older run.

The resume rule for configs: a resumed run keeps the config it was started with (its ``config.yaml``). What
may differ is listed in :data:`APPLIED_ON_RESUME` (schedule and optimiser values, which the resumed
optimiser and schedule then use) and :data:`RUNTIME_SETTINGS` (how the run is shown, logged, checkpointed
and fed, which change no result); any other difference is refused with a :class:`ConfigError` naming the
dotted keys, unless explicitly allowed (``--allow-config-change``: the changes then take effect). Nothing
is looked up here in a way that writes: the run folder is only written once the resume has been validated
(see :func:`ccnet.engine.train.train`), through :func:`writing_to` and :func:`write_run_config`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from ccnet.config import Config, ConfigError, config_from_dict, config_to_dict, save_config
from ccnet.engine.checkpoint import CheckpointManager
from ccnet.engine.dist import DistContext, broadcast_object
from ccnet.engine.errors import ResumeError, TrainingError

__all__ = [
    "APPLIED_ON_RESUME",
    "RUNTIME_SETTINGS",
    "check_resume_config",
    "config_differences",
    "resolve_run_dir",
    "run_folder_to_resume",
    "write_run_config",
    "writing_to",
]

# Values a resumed run takes from the new config and applies to the restored optimiser and schedule.
APPLIED_ON_RESUME = frozenset(
    {
        "optim.lr",
        "optim.min_lr",
        "optim.power",
        "optim.warmup_iters",
        "optim.warmup_ratio",
        "optim.weight_decay",
        "optim.momentum",
        "optim.clip_grad_norm",
        "train.max_iters",
    }
)
# Settings that change how a run is shown, logged, checkpointed or fed, never what it computes.
RUNTIME_SETTINGS = frozenset(
    {
        "train.work_dir",
        "train.progress",
        "train.log_interval",
        "train.tensorboard",
        "train.num_threads",
        "train.val_interval",
        "train.checkpoint_interval",
        "train.keep_last",
        "train.device",
        "data.num_workers",
        "eval.batch_size",
    }
)


def resolve_run_dir(config: Config, resume: bool | str | Path, ctx: DistContext) -> tuple[Path, Path | None]:
    """(run directory, checkpoint to resume from or None). Reads only: nothing is created or removed.

    Raises:
        ResumeError: nothing to resume where the resume points (the message names the folder or file).
        TrainingError: a new run's ``train.work_dir`` already holds checkpoints.
    """
    explicit = Path(config.train.work_dir) if config.train.work_dir else None
    if resume and not isinstance(resume, bool):
        target = Path(resume)
        if target.is_dir():
            checkpoint = CheckpointManager(target, clean=False).latest()
            if checkpoint is None:
                raise ResumeError(
                    f"--resume {target}: no checkpoint to resume from in this folder (no iter_*.pt file); "
                    "nothing was resumed"
                )
        elif target.exists():
            checkpoint = target
        else:
            raise ResumeError(f"--resume {target}: no such checkpoint file or run folder")
        # the run continues in its own folder, wherever it is now (train.work_dir, e.g. from the run's
        # config.yaml, may still name the place it was started in)
        return checkpoint.parent, checkpoint
    if resume:
        if explicit is not None:
            run = explicit
            if not run.is_dir():
                raise ResumeError(
                    f"--resume: no checkpoint to resume from: train.work_dir {run} does not exist"
                )
        else:
            parent = Path("runs") / config.name
            runs = sorted(path for path in parent.glob("*") if path.is_dir())
            if not runs:
                raise ResumeError(f"--resume: no checkpoint to resume from: no run folder under {parent}")
            run = runs[-1]  # folders are named by their start time
        checkpoint = CheckpointManager(run, clean=False).latest()
        if checkpoint is None:
            older = "" if explicit else "; to continue an older run, pass its folder: --resume PATH"
            raise ResumeError(
                f"--resume: no checkpoint to resume from in {run}, the newest run (it stopped before its "
                f"first checkpoint); nothing was resumed. Start a new run without --resume{older}"
            )
        return run, checkpoint
    if explicit is not None:
        existing = CheckpointManager(explicit, clean=False).latest()
        if existing is not None:
            raise TrainingError(
                f"train.work_dir {explicit} already holds checkpoints ({existing.name}); pass --resume to "
                "continue that run, or choose another train.work_dir"
            )
        return explicit, None
    return broadcast_object(_new_run_folder(Path("runs") / config.name), ctx), None


def _new_run_folder(parent: Path) -> Path:
    """``parent/<start time>``, with a ``-2``, ``-3``, ... suffix when a run started in the same second (two
    runs must never share a folder); the suffixes sort after the plain name, keeping "newest = last"."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder, count = parent / stamp, 1
    while folder.exists():
        count += 1
        folder = parent / f"{stamp}-{count}"
    return folder


def run_folder_to_resume(config: Config, resume: bool | str | Path) -> Path | None:
    """The folder whose run ``resume`` continues (see :func:`resolve_run_dir`), or None when there is none;
    a look-up only, without checks (the command line takes that run's ``config.yaml`` as the base config)."""
    if not resume:
        return None
    if not isinstance(resume, bool):
        target = Path(resume)
        return target if target.is_dir() else target.parent
    if config.train.work_dir:
        return Path(config.train.work_dir)
    runs = sorted(path for path in (Path("runs") / config.name).glob("*") if path.is_dir())
    return runs[-1] if runs else None


# --- the config of a resumed run -----------------------------------------------------------------------
def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


def _normalised(values: Mapping[str, Any]) -> dict[str, Any]:
    """A saved config as the current schema resolves it (defaults of newer fields filled in)."""
    try:
        return config_to_dict(config_from_dict(values))
    except ConfigError:  # written by another version of the schema: compare what is there
        return dict(values)


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (saved value, current value) for every key whose values differ."""
    old, new = _flatten(_normalised(saved)), _flatten(_normalised(current))
    missing = object()
    return {
        key: (old.get(key), new.get(key))
        for key in sorted(old.keys() | new.keys())
        if old.get(key, missing) != new.get(key, missing)
    }


def saved_run_config(checkpoint: Path, state: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """(the config of the run a checkpoint belongs to, where it was read): the ``config.yaml`` beside the
    checkpoint, else the config stored in the checkpoint; (None, "") when neither is readable."""
    path = checkpoint.parent / "config.yaml"
    if path.is_file():
        try:
            values = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            values = None
        if isinstance(values, dict):
            return values, str(path)
    if isinstance(state.get("config"), Mapping):
        return dict(state["config"]), f"the config stored in {checkpoint}"
    return None, ""


def check_resume_config(
    config: Config, checkpoint: Path, state: Mapping[str, Any], *, allow_changes: bool = False
) -> dict[str, tuple[Any, Any]]:
    """Check that ``config`` may continue the run of ``checkpoint`` (see the module docstring).

    With ``allow_changes`` (``--allow-config-change``) keys outside the allowed ones may differ too: the
    resumed run is built from ``config``, so they take effect (a change the checkpoint cannot be loaded into,
    such as another architecture, still fails when it is loaded).

    Returns the differences the resumed run applies (:data:`APPLIED_ON_RESUME`, and with ``allow_changes``
    every other difference as well), key -> (old, new).

    Raises:
        ConfigError: keys outside the allowed ones differ without ``allow_changes`` (all named with both
            values), or ``train.max_iters`` is below the checkpoint's iteration.
    """
    saved, source = saved_run_config(checkpoint, state)
    differences = config_differences(saved, config_to_dict(config)) if saved is not None else {}
    refused = {k: v for k, v in differences.items() if k not in APPLIED_ON_RESUME | RUNTIME_SETTINGS}
    if refused and not allow_changes:
        listed = ", ".join(f"{key} ({old!r} -> {new!r})" for key, (old, new) in refused.items())
        raise ConfigError(
            f"--resume {checkpoint}: the config differs from the run's ({source}) in {listed}; a resumed run "
            "keeps its config except optim.* schedule values, train.max_iters and logging/checkpoint/worker "
            "settings; drop those changes (without a CONFIG, --resume uses the run's config.yaml), pass "
            "--allow-config-change to make them in this run, or start a new run"
        )
    iteration = int(state["iteration"])
    if config.train.max_iters < iteration:
        raise ConfigError(
            f"--resume {checkpoint}: train.max_iters={config.train.max_iters} is below the checkpoint's "
            f"iteration {iteration}; pass train.max_iters >= {iteration}"
        )
    if allow_changes:
        return {k: v for k, v in differences.items() if k not in RUNTIME_SETTINGS}
    return {k: v for k, v in differences.items() if k in APPLIED_ON_RESUME}


@contextlib.contextmanager
def writing_to(what: str, path: Path) -> Iterator[None]:
    """Turn a failed write (read-only folder, a file in the way, full disk) into one line naming ``path``."""
    try:
        yield
    except OSError as err:
        reason = err.strerror or str(err)
        raise TrainingError(f"cannot write {what} {path}: {reason}") from err


def write_run_config(config: Config, work_dir: Path) -> None:
    """``work_dir/config.yaml`` via a temporary file and ``os.replace``: a run killed while writing it keeps
    a whole config.yaml (a resume reads it as its base config)."""
    path = work_dir / "config.yaml"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_config(config, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
