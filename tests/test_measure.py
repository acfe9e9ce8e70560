"""``ccnet.measure``: FLOPs against hand counts, the fresh-process peak memory, timing, the machine line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from ccnet.measure import (
    PeakMemory,
    Workload,
    count_flops,
    cpu_flags,
    describe_machine,
    flop_counter,
    machine,
    peak_memory,
    peak_memory_supported,
    steady_peak_memory,
    time_interleaved,
)

needs_proc = pytest.mark.skipif(not peak_memory_supported(), reason="needs Linux /proc/self/clear_refs")
ALLOCATED_MB = 64


def allocate_workload(megabytes: int) -> Workload:
    """A memory-worker target: allocates (and writes) a float32 tensor of ``megabytes`` MB."""
    kept = []
    return Workload(run=lambda: kept.append(torch.ones(megabytes * 2**20 // 4)), warmup=lambda: torch.ones(1))


def step_workload(step_mb: int, first_step_mb: int) -> Workload:
    """A memory-worker target like a training step: every run allocates and frees ``step_mb`` MB; the first
    run also keeps ``first_step_mb`` MB for good (one-time state, as a cache)."""
    kept = []

    def run() -> None:
        if not kept:
            kept.append(torch.ones(first_step_mb * 2**20 // 4))
        temporary = torch.ones(step_mb * 2**20 // 4)
        del temporary

    return Workload(run=run, warmup=lambda: torch.ones(1))


def test_conv_and_linear_flops_match_the_hand_count():
    conv = nn.Conv2d(4, 6, 3, padding=1)
    x = torch.randn(2, 4, 5, 7)
    assert count_flops(lambda: conv(x)) == 2 * (2 * 6 * 5 * 7) * (4 * 3 * 3)  # 2 x outputs x MACs each
    linear = nn.Linear(8, 5)
    assert count_flops(lambda: linear(torch.randn(3, 8))) == 2 * 3 * 8 * 5


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
def test_onednn_1x1_convolution_is_counted():
    x, weight = torch.randn(1, 16, 10, 12), torch.randn(24, 16, 1, 1)
    with flop_counter() as counter:
        y = torch.mkldnn_convolution(x, weight, None, [0, 0], [1, 1], [1, 1], 1)
    assert y.shape == (1, 24, 10, 12)
    assert counter.get_total_flops() == 2 * (10 * 12) * 16 * 24


def test_importing_ccnet_registers_no_flop_formula():
    code = (
        "import torch.utils.flop_counter as fc, torch\n"
        "import ccnet, ccnet.ops, ccnet.measure\n"
        "op = torch.ops.aten.mkldnn_convolution\n"
        "before = op in fc.flop_registry\n"
        "ccnet.measure.flop_counter()\n"
        "print(before, op in fc.flop_registry)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"]


@needs_proc
def test_peak_memory_of_a_known_allocation_in_a_fresh_process():
    measured = peak_memory(f"{Path(__file__).resolve()}:allocate_workload", {"megabytes": ALLOCATED_MB})
    assert isinstance(measured, PeakMemory)
    assert ALLOCATED_MB <= measured.increase_mb < 2 * ALLOCATED_MB  # MB, not kB or pages
    assert measured.peak_mb >= measured.increase_mb


@needs_proc
def test_a_failing_memory_worker_raises_with_its_error():
    with pytest.raises(RuntimeError, match="No module named"):
        peak_memory("ccnet_no_such_module:workload", threads=1)


def test_time_interleaved_alternates_the_order_and_returns_medians():
    calls = []
    functions = {
        "slow": lambda: (calls.append("slow"), time.sleep(0.02)),
        "fast": lambda: calls.append("fast"),
    }
    times = time_interleaved(functions, repetitions=3, warmup=1)
    assert calls == ["slow", "fast", "slow", "fast", "fast", "slow", "slow", "fast"]
    assert times["slow"] >= 0.02 > times["fast"] >= 0


def test_machine_names_cpu_flags_threads_and_torch():
    info = machine()
    assert info["threads"] == torch.get_num_threads() and info["torch"] == torch.__version__
    assert all(flag.startswith(("avx", "amx", "fma", "asimd", "sve")) for flag in info["cpu_flags"])
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and " avx2" in cpuinfo.read_text():
        assert "avx2" in cpu_flags()
    line = describe_machine(info)
    assert info["cpu"] in line and f"{info['threads']} threads" in line and info["torch"] in line
    legacy = {"processor": "Some CPU", "threads": 2, "torch": "2.4"}  # results stored before the flags
    assert describe_machine(legacy) == "Some CPU, 2 threads, torch 2.4"


@needs_proc
def test_steady_peak_memory_counts_each_step_and_leaves_one_time_state_to_the_first():
    measured = steady_peak_memory(
        f"{Path(__file__).resolve()}:step_workload", {"step_mb": 48, "first_step_mb": 96}, steps=3
    )
    assert len(measured.per_step_mb) == 3
    # a few pages of the tensors may already be resident (the allocator's top chunk): 0.98x, not 1x
    assert 0.98 * (48 + 96) <= measured.per_step_mb[0] < 1.5 * (48 + 96)
    for later in measured.per_step_mb[1:]:
        assert 0.98 * 48 <= later < 1.5 * 48  # freed pages went back: each step counts only its own
    assert 0.98 * 48 <= measured.steady_mb < 1.5 * 48


def test_steady_peak_memory_needs_two_steps():
    with pytest.raises(ValueError, match="steps must be >= 2"):
        steady_peak_memory("ccnet.measure:machine", steps=1)
