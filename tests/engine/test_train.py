"""Training end to end on the built-in context dataset: learning, run files, resume equality, non-finite
loss and state, the resume rule (applied schedule overrides, refused changes, an older checkpoint),
OHEM / category consistent loss / bf16 paths, and start-up errors."""

from __future__ import annotations

import logging

import pytest
import torch

from ccnet.config import ConfigError
from ccnet.engine import optim as optim_module
from ccnet.engine import train as train_module
from ccnet.engine.checkpoint import first_non_finite, load_checkpoint
from ccnet.engine.train import NonFiniteLossError, TrainingError, train
from ccnet.models import read_weights

from .conftest import tiny_config


@pytest.mark.slow
def test_short_training_learns_the_context_task(tmp_path):
    # 800 iterations of the default recipe at lr 6e-3. Measured final mIoU over train.seed 0-3: 0.649, 0.939,
    # 0.950, 0.952 (a run sometimes starts using the marker late); fcn_tiny, which cannot see the marker from
    # the objects, ends at 0.39 (chance on the objects). So > 0.5 means the context is used.
    config = tiny_config(
        tmp_path / "run",
        "train.max_iters=800",
        "optim.lr=0.006",
        "data.options.length=6400",
        "data.val_options.length=64",
        "train.checkpoint_interval=400",
        "train.val_interval=400",
    )
    result = train(config)
    assert result.metrics.miou > 0.5, result.metrics
    assert result.best_miou == pytest.approx(max(result.best_miou, result.metrics.miou))
    files = {p.name for p in result.work_dir.iterdir()}
    assert {"config.yaml", "metrics.json", "metrics.md", "model.safetensors", "best.pt"} <= files
    assert {"iter_0000400.pt", "iter_0000800.pt"} <= files


def _final_weights(result) -> dict[str, torch.Tensor]:
    return read_weights(result.weights)[0]


class _Interrupted(Exception):
    pass


def test_resume_after_an_interruption_gives_identical_weights(tmp_path, monkeypatch):
    extra = (
        "train.max_iters=12",
        "train.checkpoint_interval=5",
        "train.deterministic=true",
        "data.num_workers=1",
    )
    reference = _final_weights(train(tiny_config(tmp_path / "reference", *extra)))

    class InterruptingPolyLR(optim_module.PolyLR):
        def step(self, *args, **kwargs):
            super().step(*args, **kwargs)
            if self.last_epoch == 8:  # during iteration 8, after the checkpoint of iteration 5
                raise _Interrupted

    with monkeypatch.context() as patch:
        patch.setattr(optim_module, "PolyLR", InterruptingPolyLR)  # what build_scheduler builds
        with pytest.raises(_Interrupted):
            train(tiny_config(tmp_path / "interrupted", *extra))
    assert load_checkpoint(tmp_path / "interrupted" / "iter_0000005.pt")["iteration"] == 5
    resumed = _final_weights(train(tiny_config(tmp_path / "interrupted", *extra), resume=True))
    assert reference.keys() == resumed.keys()
    for key, value in reference.items():
        assert torch.equal(value, resumed[key]), key


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    forward = train_module.SegmentationLoss.forward

    def poisoned(self, logits, aux, target):
        terms = forward(self, logits, aux, target)
        calls["n"] += 1
        if calls["n"] == 4:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(train_module.SegmentationLoss, "forward", poisoned)
    work_dir = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at iteration 4.*iter_0000002\.pt"):
        train(tiny_config(work_dir, "train.max_iters=10", "train.checkpoint_interval=2"))
    assert load_checkpoint(work_dir / "iter_0000002.pt")["iteration"] == 2
    assert not (work_dir / "iter_0000004.pt").exists()


def test_ohem_category_consistent_loss_bf16_and_clipping_train_and_resume(tmp_path):
    extra = (
        "train.max_iters=3",
        "train.checkpoint_interval=2",
        "loss.ohem.enabled=true",
        "loss.ohem.min_kept=500",
        "loss.ccl.enabled=true",
        "train.amp=bf16",
        "optim.clip_grad_norm=1.0",
    )
    result = train(tiny_config(tmp_path / "run", *extra))
    state = load_checkpoint(result.checkpoint)
    assert state["iteration"] == 3 and "ccl" in state["extra_modules"]
    assert state["extra_modules"]["ccl"]["projection.weight"].shape == (16, 32, 1, 1)
    resumed = train(tiny_config(tmp_path / "run", *extra[1:], "train.max_iters=4"), resume=True)
    assert resumed.iterations == 4


def test_start_up_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"train.amp='fp16' needs CUDA"):
        train(tiny_config(tmp_path / "a", "train.amp=fp16", "train.device=cpu"))
    with pytest.raises(TrainingError, match="no checkpoint to resume from"):
        train(tiny_config(tmp_path / "b"), resume=True)
    train(tiny_config(tmp_path / "c", "train.max_iters=1"))
    with pytest.raises(TrainingError, match=r"already holds checkpoints .*--resume"):
        train(tiny_config(tmp_path / "c", "train.max_iters=1"))
    with pytest.raises(ConfigError, match=r"data.augment='authors'"):
        train(tiny_config(tmp_path / "d", "data.augment=authors"))


def test_tensorboard_is_optional(tmp_path, caplog):
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with caplog.at_level(logging.WARNING, logger="ccnet.engine.train"):
            train(tiny_config(tmp_path / "run", "train.max_iters=1", "train.tensorboard=true"))
        assert "tensorboard package is not installed" in caplog.text
    else:
        train(tiny_config(tmp_path / "run", "train.max_iters=1", "train.tensorboard=true"))
        assert any((tmp_path / "run" / "tensorboard").iterdir())


def test_resume_applies_schedule_overrides_and_refuses_other_changes(tmp_path):
    work_dir = tmp_path / "run"
    train(tiny_config(work_dir, "train.max_iters=2", "train.checkpoint_interval=1"))
    saved = (work_dir / "config.yaml").read_bytes()
    with pytest.raises(ConfigError, match=r"differs from the run's .* in model\.recurrence \(2 -> 1\)"):
        train(tiny_config(work_dir, "train.max_iters=4", "model.recurrence=1"), resume=True)
    assert (work_dir / "config.yaml").read_bytes() == saved  # refused before anything was written

    config = tiny_config(work_dir, "train.max_iters=4", "train.checkpoint_interval=1", "optim.lr=0.0005")
    train(config, resume=True)
    state = load_checkpoint(work_dir / "iter_0000003.pt")
    group, oc = state["optimizer"]["param_groups"][0], config.optim
    assert group["initial_lr"] == 0.0005 and state["scheduler"]["base_lrs"] == [0.0005]
    # the closed poly formula (no warm-up in this config), not the package's own poly_lr
    assert oc.warmup_iters == 0
    assert group["lr"] == pytest.approx((0.0005 - oc.min_lr) * (1 - 3 / 4) ** oc.power + oc.min_lr)
    assert "lr: 0.0005" in (work_dir / "config.yaml").read_text()


def test_resume_from_an_older_checkpoint_sets_the_newer_ones_aside(tmp_path):
    work_dir = tmp_path / "run"
    train(tiny_config(work_dir, "train.max_iters=3", "train.checkpoint_interval=1", "train.keep_last=3"))
    result = train(
        tiny_config(work_dir, "train.max_iters=3", "train.checkpoint_interval=1", "train.keep_last=3"),
        resume=work_dir / "iter_0000001.pt",
    )
    assert result.checkpoint == work_dir / "iter_0000003.pt"
    names = sorted(p.name for p in work_dir.iterdir() if "iter_" in p.name)
    assert names == [
        "iter_0000001.pt",
        "iter_0000002.pt",
        "iter_0000002.pt.superseded",
        "iter_0000003.pt",
        "iter_0000003.pt.superseded",
    ]


def test_a_non_finite_state_is_never_written_as_a_checkpoint(tmp_path):
    work_dir = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match="non-finite") as caught:
        train(tiny_config(work_dir, "train.max_iters=8", "train.checkpoint_interval=1", "optim.lr=1e6"))
    written = sorted(work_dir.glob("iter_*.pt"))
    for path in written:
        state = load_checkpoint(path)
        assert first_non_finite({k: state[k] for k in ("model", "optimizer")}) is None, path
    message = str(caught.value)
    assert (f"newest finite checkpoint is {written[-1]}" in message) if written else "no finite" in message


def test_unwritable_run_folder_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TrainingError, match=rf"cannot write the run folder {blocker / 'run'}"):
        train(tiny_config(blocker / "run", "train.max_iters=1"))
