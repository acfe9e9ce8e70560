"""Poly schedule with warm-up against hand-computed values; optimiser choice."""

from __future__ import annotations

import pytest
import torch

from ccnet.engine.optim import PolyLR, build_optimizer, poly_lr


def test_poly_values_by_hand():
    assert poly_lr(0.01, 0, 100, power=0.9, min_lr=1e-4) == pytest.approx(0.01)
    assert poly_lr(0.01, 50, 100, power=0.9, min_lr=1e-4) == pytest.approx(0.0099 * 0.5**0.9 + 1e-4)
    assert poly_lr(0.01, 100, 100, power=0.9, min_lr=1e-4) == pytest.approx(1e-4)
    assert poly_lr(0.01, 200, 100, power=1.0) == 0.0  # clamped past the end


def test_linear_warmup_scales_the_poly_value():
    # iteration 5 of a 10-iteration warm-up from ratio 0.1: factor 1 - 0.5 * 0.9 = 0.55
    assert poly_lr(1.0, 5, 100, power=1.0, warmup_iters=10, warmup_ratio=0.1) == pytest.approx(0.55 * 0.95)
    assert poly_lr(1.0, 0, 100, power=1.0, warmup_iters=10, warmup_ratio=0.1) == pytest.approx(0.1)
    assert poly_lr(1.0, 10, 100, power=1.0, warmup_iters=10, warmup_ratio=0.1) == pytest.approx(0.9)


def test_scheduler_follows_poly_lr_per_iteration():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer([parameter], lr=0.1, momentum=0.9, weight_decay=5e-4)
    scheduler = PolyLR(optimizer, 20, power=0.9, min_lr=1e-3, warmup_iters=3, warmup_ratio=0.01)
    for iteration in range(20):
        # mmcv's linear warm-up factor 1 - (1 - i / warmup) * (1 - ratio) on the poly value, written out
        warmup = 1 - (1 - iteration / 3) * (1 - 0.01) if iteration < 3 else 1.0
        expected = ((0.1 - 1e-3) * (1 - iteration / 20) ** 0.9 + 1e-3) * warmup
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected)
        optimizer.step()
        scheduler.step()


def test_optimizers():
    parameter = torch.nn.Parameter(torch.zeros(1))
    sgd = build_optimizer([parameter], lr=0.01, momentum=0.9, weight_decay=5e-4)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    assert isinstance(build_optimizer([parameter], name="adamw", lr=1e-3), torch.optim.AdamW)
    with pytest.raises(ValueError, match=r"optim\.name"):
        build_optimizer([parameter], name="lion", lr=1e-3)


@pytest.mark.parametrize("power", [0.5, 2.0])
def test_poly_schedule_uses_its_power(power):
    # The closed formula, written out: lr(t) = (base - min) * (1 - t / T) ** power + min, t = 0 .. T - 1.
    base, minimum, total = 0.1, 1e-3, 10
    expected = [(base - minimum) * (1 - t / total) ** power + minimum for t in range(total)]
    assert expected[5] != pytest.approx((base - minimum) * 0.5**0.9 + minimum)  # differs from the default
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], lr=base, momentum=0.9)
    scheduler = PolyLR(optimizer, total, power=power, min_lr=minimum)
    seen = []
    for _ in range(total):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx(expected, rel=1e-9)
    assert poly_lr(base, 5, total, power=power, min_lr=minimum) == pytest.approx(expected[5], rel=1e-9)
