"""Checkpoints: atomic writes, keep-last-N + best, generator states, rebuilding models from weight files, and
the checks of a checkpoint to resume from (finite, complete, a training checkpoint at all)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ccnet.engine.checkpoint import (
    CheckpointManager,
    atomic_save,
    capture_rng_state,
    first_non_finite,
    load_checkpoint,
    load_training_checkpoint,
    restore_rng_state,
)
from ccnet.engine.errors import ResumeError
from ccnet.engine.setup import load_model


def test_atomic_save_replaces_whole_files_and_leaves_no_temporary(tmp_path):
    path = atomic_save({"a": torch.ones(3)}, tmp_path / "sub" / "x.pt")
    atomic_save({"a": torch.zeros(2)}, path)
    assert torch.equal(load_checkpoint(path)["a"], torch.zeros(2))
    assert [p.name for p in path.parent.iterdir()] == ["x.pt"]


def test_a_write_that_fails_half_way_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = atomic_save({"a": torch.arange(4.0)}, tmp_path / "x.pt")
    before = path.read_bytes()

    def save_then_fail(obj, f, *args, **kwargs):  # a full disk or a kill in the middle of the write
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", save_then_fail)
    with pytest.raises(OSError, match="No space left"):
        atomic_save({"a": torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert torch.equal(load_checkpoint(path)["a"], torch.arange(4.0))
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]  # no temporary file left behind


def test_a_failed_checkpoint_write_keeps_the_older_checkpoints_and_the_best(tmp_path, monkeypatch):
    manager = CheckpointManager(tmp_path, keep_last=2)
    manager.save({"i": torch.tensor(1)}, 10, best=True)
    manager.save({"i": torch.tensor(2)}, 20)
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def save_then_fail(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", save_then_fail)
    for keep in (True, False):  # a new iteration file that would also be the best, then a best-only write
        with pytest.raises(OSError, match="No space left"):
            manager.save({"i": torch.tensor(3)}, 30, keep=keep, best=True)
    monkeypatch.undo()
    # nothing pruned for a checkpoint that was never written, nothing half-written, nothing left over
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files
    assert manager.latest() == tmp_path / "iter_0000020.pt"
    assert load_checkpoint(manager.best)["i"].item() == 1


def test_manager_keeps_the_last_n_and_the_best(tmp_path):
    (tmp_path / ".iter_0000009.pt.tmp-123").write_bytes(b"partial write of a killed process")
    manager = CheckpointManager(tmp_path, keep_last=2)
    assert not list(tmp_path.glob(".*tmp*"))  # stale temporary files are removed
    manager.save({"i": 1}, 10, best=True)
    manager.save({"i": 2}, 20)
    manager.save({"i": 3}, 30)
    manager.save({"i": 4}, 35, keep=False, best=True)  # a best result between checkpoints
    assert [i for i, _ in manager.iteration_checkpoints()] == [20, 30]
    assert manager.latest() == tmp_path / "iter_0000030.pt"
    assert load_checkpoint(manager.best)["i"] == 4
    with pytest.raises(ValueError, match="nothing to write"):
        manager.save({}, 40, keep=False)


def test_rng_state_round_trip_through_a_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    atomic_save({"rng": capture_rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(()).item())
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(()).item()) == expected


def test_models_rebuild_from_checkpoints_and_exported_weights(trained_run):
    for path in (trained_run.weights, trained_run.checkpoint, trained_run.work_dir / "best.pt"):
        model, info = load_model(path)
        assert model.arch == "ccnet_tiny" and not model.training
        assert info["classes"] == ("background", "red", "green", "blue")
        assert len(info["palette"]) == 4
    model, _ = load_model(trained_run.weights)
    expected = trained_run.model.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_load_model_errors(tmp_path, trained_run):
    with pytest.raises(FileNotFoundError, match=r"weights file not found: .*missing\.pt"):
        load_model(tmp_path / "missing.pt")
    anonymous = tmp_path / "anonymous.pt"
    torch.save({"state_dict": trained_run.model.state_dict()}, anonymous)
    with pytest.raises(ValueError, match="does not name its architecture; pass the model name"):
        load_model(anonymous)
    model, _ = load_model(anonymous, name="ccnet_tiny")
    assert model.num_classes == 4


def test_first_non_finite_names_the_entry():
    state = {"model": {"a": torch.ones(2), "steps": torch.tensor([3])}, "optimizer": {"state": [{}]}}
    assert first_non_finite(state) is None
    state["optimizer"]["state"][0]["exp_avg"] = torch.tensor([1.0, float("inf")])
    assert first_non_finite(state) == "optimizer.state.0.exp_avg"


def test_load_training_checkpoint_says_what_a_file_is(tmp_path, trained_run):
    state = load_training_checkpoint(trained_run.checkpoint)
    assert state["iteration"] == 30
    with pytest.raises(ResumeError, match=r"model\.safetensors: this is exported model weights"):
        load_training_checkpoint(trained_run.weights)
    truncated = tmp_path / "iter_0000030.pt"
    truncated.write_bytes(trained_run.checkpoint.read_bytes()[:1000])
    with pytest.raises(ResumeError, match=r"iter_0000030\.pt: cannot read .* truncated"):
        load_training_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ResumeError, match=r"foreign\.pt: not a training checkpoint .*missing model, optim"):
        load_training_checkpoint(foreign)
    state["model"][next(iter(state["model"]))].fill_(float("nan"))
    poisoned = atomic_save(state, tmp_path / "poisoned.pt")
    with pytest.raises(ResumeError, match=r"poisoned\.pt: the checkpoint holds non-finite values \(model\."):
        load_training_checkpoint(poisoned)
    with pytest.raises(ResumeError, match="no such checkpoint file"):
        load_training_checkpoint(tmp_path / "missing.pt")


def test_manager_sets_newer_checkpoints_aside_and_looks_without_cleaning(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=5)
    for iteration in (2, 4, 6):
        manager.save({"i": iteration}, iteration)
    (tmp_path / ".iter_0000008.pt.tmp-1").write_bytes(b"partial")
    CheckpointManager(tmp_path, clean=False).latest()  # a look before a resume is validated: no change
    assert (tmp_path / ".iter_0000008.pt.tmp-1").exists()
    moved = manager.set_aside_newer_than(2)
    assert sorted(p.name for p in moved) == ["iter_0000004.pt.superseded", "iter_0000006.pt.superseded"]
    assert manager.latest() == tmp_path / "iter_0000002.pt"
