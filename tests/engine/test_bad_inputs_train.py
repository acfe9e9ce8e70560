"""Bad inputs of ``ccnet train`` around resuming, non-finite training and unwritable run folders, through the
real command line in subprocesses: each ends with its exit code and one line naming the culprit, no
traceback, and leaves every file of an existing run as it was (compared with :func:`tree_hash`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from ccnet.config import load_config
from ccnet.engine.checkpoint import first_non_finite, load_checkpoint
from tests.bad_input import assert_one_line_error, cli_server, run_cli, tree_hash

from .conftest import TINY, tiny_overrides

CHECKPOINTS = ("train.max_iters=4", "train.checkpoint_interval=2", "data.val_options.length=4")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished 4-iteration run with iter_0000002.pt, iter_0000004.pt, best.pt and model.safetensors."""
    work_dir = tmp_path_factory.mktemp("finished") / "run"
    result = run_cli("train", *tiny_overrides(work_dir, *CHECKPOINTS))
    assert result.returncode == 0, result.stderr[-3000:]
    return work_dir


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    """A private copy of the finished run (a failing case must not disturb the others)."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """``cli(*args)`` -> CompletedProcess of ``ccnet ARGS``, run in one long-lived Python process."""
    with cli_server(tmp_path_factory.mktemp("cli-cwd")) as run:
        yield run


@pytest.fixture
def train_cli(cli):
    """``train_cli(*args, cwd=None)``: ``ccnet train ARGS``; in its own process where ``runs/`` of ``cwd``
    matters, else through the long-lived one."""

    def train(*args: str, cwd: Path | None = None):
        return run_cli("train", *args, cwd=cwd) if cwd is not None else cli("train", *args)

    return train


def test_resume_refuses_when_the_newest_run_died_before_its_first_checkpoint(
    train_cli, finished_run, tmp_path
):
    runs = tmp_path / "runs" / "default"
    older = Path(shutil.copytree(finished_run, runs / "20260101-120000"))
    newest = runs / "20260101-130000"  # started later, killed before its first checkpoint
    newest.mkdir()
    shutil.copy(older / "config.yaml", newest / "config.yaml")
    before = tree_hash(tmp_path / "runs")
    result = train_cli(*TINY, "train.max_iters=6", "--resume", cwd=tmp_path)
    newest_name = "runs/default/20260101-130000"
    assert_one_line_error(result, 1, "train", newest_name, "no checkpoint", "--resume PATH")
    assert tree_hash(tmp_path / "runs") == before  # the older run was not resumed, nothing was written


def test_resume_with_nothing_under_runs_names_the_folder(train_cli, tmp_path):
    result = train_cli(*TINY, "--resume", cwd=tmp_path)
    assert_one_line_error(result, 1, "train", "runs/default", "no checkpoint to resume from")


def test_resume_with_a_different_config_names_the_differing_keys(train_cli, run_copy):
    before = tree_hash(run_copy)
    result = train_cli(*TINY, "data.options.length=32", "model.recurrence=1", "--resume", str(run_copy))
    assert_one_line_error(
        result, 2, "train", str(run_copy), "data.options.length (64 -> 32)", "model.recurrence (2 -> 1)"
    )
    assert tree_hash(run_copy) == before


def test_resume_with_allow_config_change_applies_and_records_the_change(train_cli, run_copy):
    result = train_cli(
        "--resume", str(run_copy), "--allow-config-change", "data.options.length=32", "train.max_iters=6"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data.options.length changed from 64 to 32" in result.stderr
    assert load_config(run_copy / "config.yaml").data.options["length"] == 32
    assert load_checkpoint(run_copy / "iter_0000006.pt")["iteration"] == 6


def test_resume_below_the_checkpoint_iteration_is_refused(train_cli, run_copy):
    before = tree_hash(run_copy)
    result = train_cli("--resume", str(run_copy), "train.max_iters=3")
    assert_one_line_error(result, 2, "train", "train.max_iters=3", "iteration 4")
    assert tree_hash(run_copy) == before


def test_resume_from_a_truncated_checkpoint(train_cli, run_copy):
    checkpoint = run_copy / "iter_0000004.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:4000])
    before = tree_hash(run_copy)
    for target in (checkpoint, run_copy):  # the file itself, or the run folder whose newest file it is
        result = train_cli("--resume", str(target))
        assert_one_line_error(result, 1, "train", str(checkpoint), "truncated")
        assert tree_hash(run_copy) == before


def test_resume_from_exported_weights(train_cli, run_copy):
    before = tree_hash(run_copy)
    result = train_cli("--resume", str(run_copy / "model.safetensors"))
    assert_one_line_error(
        result, 1, "train", str(run_copy / "model.safetensors"), "exported model weights", "not a training"
    )
    assert tree_hash(run_copy) == before


def test_resume_of_a_folder_without_checkpoint(train_cli, run_copy, tmp_path):
    empty = tmp_path / "died-early"
    empty.mkdir()
    shutil.copy(run_copy / "config.yaml", empty / "config.yaml")
    before = tree_hash(empty)
    result = train_cli("--resume", str(empty))
    assert_one_line_error(result, 1, "train", str(empty), "no checkpoint")
    assert tree_hash(empty) == before
    result = train_cli("--resume", str(tmp_path / "nowhere"))
    assert_one_line_error(result, 1, "train", str(tmp_path / "nowhere"), "no such")


def test_resume_from_a_non_finite_checkpoint(train_cli, run_copy):
    # written by an older ccnet, which did not check: refused, pointing at an earlier file
    checkpoint = run_copy / "iter_0000004.pt"
    state = load_checkpoint(checkpoint)
    name = next(iter(state["model"]))
    state["model"][name] = torch.full_like(state["model"][name], float("nan"))
    torch.save(state, checkpoint)
    before = tree_hash(run_copy)
    result = train_cli("--resume", str(run_copy))
    assert_one_line_error(result, 1, "train", str(checkpoint), "non-finite", f"model.{name}")
    assert tree_hash(run_copy) == before


def test_resume_of_a_checkpoint_that_does_not_fit_writes_nothing(train_cli, run_copy):
    checkpoint = run_copy / "iter_0000004.pt"
    state = load_checkpoint(checkpoint)
    name = next(key for key in state["model"] if key.endswith("weight"))
    state["model"][name] = state["model"][name][:1]  # another shape, as from another model
    torch.save(state, checkpoint)
    before = tree_hash(run_copy)
    result = train_cli("--resume", str(run_copy))
    assert_one_line_error(result, 1, "train", str(checkpoint), "does not fit", name)
    assert tree_hash(run_copy) == before  # config.yaml included: written only after a successful load


def test_non_finite_training_names_a_finite_checkpoint(train_cli, tmp_path):
    work_dir = tmp_path / "run"
    result = train_cli(
        *tiny_overrides(work_dir, "optim.lr=1e6", "train.max_iters=8", "train.checkpoint_interval=1")
    )
    line = assert_one_line_error(result, 1, "train", "non-finite")
    checkpoints = sorted(work_dir.glob("iter_*.pt"))
    for path in checkpoints:  # every checkpoint written is finite
        state = load_checkpoint(path)
        assert first_non_finite({k: state[k] for k in ("model", "optimizer")}) is None, path
    if checkpoints:
        assert f"the newest finite checkpoint is {checkpoints[-1]}" in line
    else:
        assert "no finite checkpoint" in line


def test_lower_lr_on_resume_is_applied_and_recorded(train_cli, run_copy):
    result = train_cli("--resume", str(run_copy), "optim.lr=0.0001", "train.max_iters=8")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "optim.lr changed from 0.003 to 0.0001" in result.stderr
    config = load_config(run_copy / "config.yaml")
    assert (config.optim.lr, config.train.max_iters) == (0.0001, 8)
    state = load_checkpoint(run_copy / "iter_0000006.pt")
    group = state["optimizer"]["param_groups"][0]
    oc = config.optim
    assert group["initial_lr"] == 0.0001 and state["scheduler"]["base_lrs"] == [0.0001]
    # the closed poly formula with mmseg's linear warm-up factor, not the package's own poly_lr
    expected = (0.0001 - oc.min_lr) * (1 - 6 / 8) ** oc.power + oc.min_lr
    if oc.warmup_iters > 6:
        expected *= 1 - (1 - 6 / oc.warmup_iters) * (1 - oc.warmup_ratio)
    assert group["lr"] == pytest.approx(expected)
    assert state["config"]["optim"]["lr"] == 0.0001


def test_training_into_a_path_below_a_file(train_cli, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")
    result = train_cli(*tiny_overrides(blocker / "run", "train.max_iters=2"))
    assert_one_line_error(result, 1, "train", str(blocker / "run"), "cannot write")
    assert blocker.read_text() == "a file where a folder should be"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_training_into_a_read_only_folder(train_cli, tmp_path):
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        result = train_cli(*tiny_overrides(read_only / "run", "train.max_iters=2"))
    finally:
        read_only.chmod(0o755)
    assert_one_line_error(result, 1, "train", str(read_only / "run"), "cannot write")
