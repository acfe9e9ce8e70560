"""A real training process killed with SIGKILL after a checkpoint exists, then resumed, ends with exactly
the weights of an uninterrupted run (deterministic CPU mode, dropout and a data worker included)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ccnet.models import read_weights

from .conftest import tiny_overrides

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
