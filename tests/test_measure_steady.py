"""steady_peak_memory's steady value is the median of the steps after the first (the first step holds the
one-time state), whatever the number of steps, also the smallest allowed, 2. The worker's arithmetic is
checked in-process with scripted /proc readings, against medians computed by hand."""

from __future__ import annotations

import itertools

import pytest

from ccnet import measure
from ccnet.measure import Workload


def _scripted(monkeypatch, readings_kb: list[tuple[int, int]]) -> None:
    """Each step reads VmRSS (its baseline), then VmHWM (its peak): ``readings_kb`` [(baseline, peak)]."""
    values = iter(itertools.chain.from_iterable(readings_kb))
    monkeypatch.setattr(measure, "_status_kb", lambda field: next(values))
    monkeypatch.setattr(measure, "_return_freed_heap", lambda: None)
    monkeypatch.setattr(measure.Path, "write_text", lambda self, text: len(text))  # no /proc writes


@pytest.mark.parametrize(
    ("readings_kb", "per_step_mb", "steady_mb"),
    [
        # two steps: the first (100 MiB with its one-time state) is left out -> 10, not (100 + 10) / 2
        ([(1024, 1024 + 102400), (2048, 2048 + 10240)], (100.0, 10.0), 10.0),
        # four steps: median of 10, 30, 20 -> 20 (with the first: median of 100, 10, 30, 20 -> 25)
        (
            [(0, 102400), (0, 10240), (512, 512 + 30720), (0, 20480)],
            (100.0, 10.0, 30.0, 20.0),
            20.0,
        ),
    ],
)
def test_steady_value_leaves_the_first_step_out(monkeypatch, readings_kb, per_step_mb, steady_mb):
    _scripted(monkeypatch, readings_kb)
    calls = []
    measured = measure._measure_steps(Workload(run=lambda: calls.append(1)), len(readings_kb))
    assert len(calls) == 1 + len(readings_kb)  # the warm-up run, then one per step
    assert measured.per_step_mb == per_step_mb and measured.steady_mb == steady_mb
