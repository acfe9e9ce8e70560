"""Learning-rate schedules: multi-step decay with linear warm-up (Mask R-CNN's 1x recipe) against values
computed by hand, the ``step`` variant, resuming, and the config checks of the schedule keys."""

from __future__ import annotations

import pytest
import torch

from ccnet.config import ConfigError, load_config
from ccnet.engine.optim import MultiStepLR, PolyLR, build_scheduler, multistep_lr


def _lrs(scheduler, steps: int) -> list[float]:
    values = []
    for _ in range(steps):
        values.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return values


def _sgd(lr: float = 0.02) -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


def test_multistep_with_warmup_by_hand():
    # warm-up over 5 iterations from 1/3: factor 1/3 + (2/3) * i / 5; then x0.1 at 6 and again at 8
    expected = [0.02 * (1 / 3 + 2 / 3 * i / 5) for i in range(5)] + [0.02, 0.002, 0.002, 0.0002, 0.0002]
    assert expected[2] == pytest.approx(0.012)
    values = [multistep_lr(0.02, i, [6, 8], gamma=0.1, warmup_iters=5, warmup_ratio=1 / 3) for i in range(10)]
    assert values == pytest.approx(expected)
    scheduler = MultiStepLR(_sgd(), [6, 8], gamma=0.1, warmup_iters=5, warmup_ratio=1 / 3)
    assert _lrs(scheduler, 10) == pytest.approx(expected)


def test_build_scheduler_from_the_config():
    config = load_config(None, ["optim.schedule=step", "optim.step_size=3", "optim.gamma=0.5", "optim.lr=1"])
    scheduler = build_scheduler(_sgd(1.0), config.optim, 10)
    assert _lrs(scheduler, 10) == pytest.approx([1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125])

    config = load_config("maskrcnn_r50_fpn_rcca_1x_coco")
    scheduler = build_scheduler(_sgd(config.optim.lr), config.optim, config.train.max_iters)
    assert isinstance(scheduler, MultiStepLR) and scheduler.milestones == (60000, 80000)
    assert config.optim.lr == 0.02 and config.train.batch_size == 16 and config.optim.warmup_iters == 500

    poly = build_scheduler(_sgd(0.01), load_config(None, []).optim, 100)
    assert isinstance(poly, PolyLR) and poly.power == 0.9


def test_resumed_multistep_keeps_the_new_settings():
    first = MultiStepLR(_sgd(), [4, 8], warmup_iters=0)
    _lrs(first, 5)
    state = first.state_dict()
    resumed = MultiStepLR(_sgd(), [6, 8], warmup_iters=0)  # e.g. a run resumed with a later first step
    resumed.load_state_dict(state)
    assert resumed.last_epoch == 5 and resumed.milestones == (6, 8)
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(0.02)  # 5 < 6: not decayed yet
    assert _lrs(resumed, 2) == pytest.approx([0.02, 0.002])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.schedule=multistep"], "optim.milestones"),
        (["optim.schedule=multistep", "optim.milestones=[80,60]"], "increasing"),
        (["optim.schedule=step"], "optim.step_size"),
        (["optim.gamma=0"], "optim.gamma"),
        (["optim.schedule=cosine"], "optim.schedule"),
        (["data.min_size=[0]"], "data.min_size"),
    ],
)
def test_bad_schedule_keys_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)
