"""A real training process killed with SIGKILL after a checkpoint exists, then resumed, ends with exactly
the weights of an uninterrupted run (deterministic CPU mode, dropout and a data worker included).

Further kills, made deterministic by hooks that pause the process at the moment to hit (the hooked runner
below; the hooks only wait, they change nothing the run computes): during the first checkpoint write (no
checkpoint yet: the resume is refused, a new run into the same folder ends identical), twice in one run
(each time during a checkpoint write), during validation, and a newest run that died before its first
checkpoint (the resume is refused and the older run's folder stays byte-identical).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from ccnet.models import read_weights
from tests.bad_input import assert_one_line_error, tree_hash

from .conftest import TINY, tiny_overrides

RUNNER = Path(__file__).with_name("cli_runner.py")
EXTRA = (
    "train.max_iters=60",
    "train.checkpoint_interval=10",
    "train.keep_last=2",
    "train.deterministic=true",
    "data.options.length=96",  # several epochs: the data position crosses epoch boundaries
    "data.num_workers=1",
)


def _command(work_dir: Path, *flags: str) -> list[str]:
    return [sys.executable, str(RUNNER), "train", *tiny_overrides(work_dir, *EXTRA), *flags]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights(tmp_path):
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    reference = subprocess.Popen(
        _command(reference_dir), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    victim = subprocess.Popen(
        _command(killed_dir), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while not list(killed_dir.glob("iter_*.pt")):  # wait for the first checkpoint
            assert victim.poll() is None, "the run ended before writing a checkpoint"
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.01)
        time.sleep(random.uniform(0.0, 0.5))  # then kill at an arbitrary moment (possibly mid-write)
        assert victim.poll() is None, "the run finished before it could be killed; make it longer"
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    finally:
        if victim.poll() is None:
            victim.kill()
    killed_at = max(int(p.stem.split("_")[1]) for p in killed_dir.glob("iter_*.pt"))
    assert killed_at < 60

    resumed = subprocess.run(_command(killed_dir, "--resume"), env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {killed_dir}" in resumed.stderr
    _, reference_err = reference.communicate(timeout=300)
    assert reference.returncode == 0, reference_err.decode()[-2000:]

    expected, _ = read_weights(reference_dir / "model.safetensors")
    actual, _ = read_weights(killed_dir / "model.safetensors")
    assert expected.keys() == actual.keys()
    for key, value in expected.items():
        assert torch.equal(value, actual[key]), key


# --- deterministic kills -----------------------------------------------------------------------------
# A shorter deterministic run, validated and checkpointed on the way (checkpoints 3, 6, 9, 12; validation
# at 6 and 12); three epochs of 4 batches.
SHORT = (
    "train.max_iters=12",
    "train.checkpoint_interval=3",
    "train.val_interval=6",
    "train.keep_last=2",
    "train.deterministic=true",
    "data.options.length=32",
    "data.val_options.length=4",
)

# The CLI runner with two hooks, enabled through the environment: PAUSE_BEFORE_REPLACE=<file name> stops the
# process for a minute just before a checkpoint's temporary file becomes <file name> (the file is being
# written); PAUSE_IN_VALIDATION=<marker> touches <marker> when validation starts and stops there.
HOOKED_RUNNER = f"""
import os, runpy, time
from pathlib import Path

pause_before = os.environ.get("PAUSE_BEFORE_REPLACE")
if pause_before:
    real_replace = os.replace

    def paused_replace(source, target):
        if Path(target).name == pause_before:
            time.sleep(60)
        real_replace(source, target)

    os.replace = paused_replace
marker = os.environ.get("PAUSE_IN_VALIDATION")
if marker:
    import ccnet.engine.train as train_module

    def paused_evaluate(*args, **kwargs):
        Path(marker).touch()
        time.sleep(60)

    train_module.evaluate = paused_evaluate
runpy.run_path({str(RUNNER)!r}, run_name="__main__")
"""


def _short_command(work_dir: Path | None, *flags: str) -> list[str]:
    overrides = tiny_overrides(work_dir, *SHORT) if work_dir else [*TINY, *SHORT]
    return [sys.executable, "-c", HOOKED_RUNNER, "train", *overrides, *flags]


def _run(command: list[str], cwd: Path | None = None, **hooks: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, env={**_env(), **hooks}, cwd=cwd, capture_output=True, text=True)


def _kill_when(command: list[str], ready, cwd: Path | None = None, **hooks: str) -> None:
    """Start ``command`` with ``hooks``, wait until ``ready()`` (it pauses there) and SIGKILL it."""
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a full pipe would block the process
        victim = subprocess.Popen(
            command, env={**_env(), **hooks}, cwd=cwd, stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            deadline = time.monotonic() + 120
            while not ready():
                if victim.poll() is not None:
                    log.seek(0)
                    pytest.fail(f"the run ended before the moment to kill: {log.read().decode()[-2000:]}")
                assert time.monotonic() < deadline, "the moment to kill did not come within 120 s"
                time.sleep(0.01)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
        finally:
            if victim.poll() is None:
                victim.kill()
                victim.wait()


def _writing(folder: Path, name: str):
    """A test that the temporary file of checkpoint ``name`` exists in ``folder`` (its write has begun)."""
    return lambda: any(folder.glob(f".{name}.tmp-*"))


def _assert_same_weights(expected: dict[str, torch.Tensor], work_dir: Path) -> None:
    actual, _ = read_weights(work_dir / "model.safetensors")
    assert expected.keys() == actual.keys()
    for key, value in expected.items():
        assert torch.equal(value, actual[key]), key


@pytest.fixture(scope="module")
def short_reference_run(tmp_path_factory) -> Path:
    """The folder of the uninterrupted short run."""
    work_dir = tmp_path_factory.mktemp("short") / "reference"
    result = _run(_short_command(work_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    return work_dir


@pytest.fixture(scope="module")
def short_reference(short_reference_run) -> dict[str, torch.Tensor]:
    """The final weights of the uninterrupted short run."""
    return read_weights(short_reference_run / "model.safetensors")[0]


@pytest.mark.slow
def test_killed_during_the_first_checkpoint_write(tmp_path, short_reference):
    work_dir = tmp_path / "run"
    _kill_when(
        _short_command(work_dir),
        _writing(work_dir, "iter_0000003.pt"),
        PAUSE_BEFORE_REPLACE="iter_0000003.pt",
    )
    assert not list(work_dir.glob("iter_*.pt"))  # only the temporary file of the unfinished write
    before = tree_hash(work_dir)
    refused = _run(_short_command(work_dir, "--resume"))
    assert_one_line_error(refused, 1, "train", str(work_dir), "no checkpoint")
    assert tree_hash(work_dir) == before
    again = _run(_short_command(work_dir))  # no checkpoint: a new run may take the folder
    assert again.returncode == 0, again.stderr[-2000:]
    assert not list(work_dir.glob(".*.tmp-*"))  # the killed write's leftover is cleaned up
    _assert_same_weights(short_reference, work_dir)


@pytest.mark.slow
def test_killed_twice_in_one_run(tmp_path, short_reference):
    work_dir = tmp_path / "run"
    _kill_when(
        _short_command(work_dir),
        _writing(work_dir, "iter_0000006.pt"),
        PAUSE_BEFORE_REPLACE="iter_0000006.pt",
    )
    assert sorted(p.name for p in work_dir.glob("iter_*.pt")) == ["iter_0000003.pt"]
    _kill_when(
        _short_command(work_dir, "--resume"),
        _writing(work_dir, "iter_0000009.pt"),
        PAUSE_BEFORE_REPLACE="iter_0000009.pt",
    )
    assert sorted(p.name for p in work_dir.glob("iter_*.pt")) == ["iter_0000003.pt", "iter_0000006.pt"]
    resumed = _run(_short_command(work_dir, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from {work_dir / 'iter_0000006.pt'} at iteration 6" in resumed.stderr
    _assert_same_weights(short_reference, work_dir)


@pytest.mark.slow
def test_killed_during_validation(tmp_path, short_reference):
    work_dir, marker = tmp_path / "run", tmp_path / "validating"
    _kill_when(_short_command(work_dir), marker.exists, PAUSE_IN_VALIDATION=str(marker))
    # validation at iteration 6 runs before that iteration's checkpoint is written
    assert sorted(p.name for p in work_dir.glob("iter_*.pt")) == ["iter_0000003.pt"]
    resumed = _run(_short_command(work_dir, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same_weights(short_reference, work_dir)


@pytest.mark.slow
def test_newest_run_killed_before_its_first_checkpoint_is_not_mistaken_for_an_older_one(
    tmp_path, short_reference_run
):
    runs = tmp_path / "runs" / "default"
    older = Path(shutil.copytree(short_reference_run, runs / "20260101-120000"))  # a finished run
    older_before = tree_hash(older)
    _kill_when(
        _short_command(None),
        lambda: len(list(runs.glob("*/.iter_0000003.pt.tmp-*"))) == 1,
        cwd=tmp_path,
        PAUSE_BEFORE_REPLACE="iter_0000003.pt",
    )
    (newest,) = set(runs.iterdir()) - {older}
    assert newest.name > older.name
    newest_before = tree_hash(newest)
    refused = _run(_short_command(None, "--resume"), cwd=tmp_path)
    assert_one_line_error(refused, 1, "train", f"runs/default/{newest.name}", "no checkpoint")
    assert tree_hash(older) == older_before  # byte-identical: the older run was not resumed
    assert tree_hash(newest) == newest_before
