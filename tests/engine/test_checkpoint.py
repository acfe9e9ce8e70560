"""Checkpoints: atomic writes, keep-last-N + best, generator states, rebuilding models from weight files."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ccnet.engine.checkpoint import (
    CheckpointManager,
    atomic_save,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
)
from ccnet.engine.setup import load_model


def test_atomic_save_replaces_whole_files_and_leaves_no_temporary(tmp_path):
    path = atomic_save({"a": torch.ones(3)}, tmp_path / "sub" / "x.pt")
    atomic_save({"a": torch.zeros(2)}, path)
    assert torch.equal(load_checkpoint(path)["a"], torch.zeros(2))
    assert [p.name for p in path.parent.iterdir()] == ["x.pt"]


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
