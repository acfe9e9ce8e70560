"""Measurement helpers shared by the attention benchmarks: interleaved timing, peak memory of one run in a
fresh subprocess, forward FLOPs.

A benchmark script using :func:`memory_in_subprocesses` must answer ``--memory-worker IMPL MODE --threads N
--shape ...`` by printing :func:`peak_increase_mb` of that case as its last output.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

MODES = ("forward", "forward_backward")


def forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module(x)


def forward_backward(module: nn.Module, x: torch.Tensor) -> None:
    x.grad = None
    for p in module.parameters():
        p.grad = None
    module(x).sum().backward()


def forward_flops(module: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops()


def time_interleaved(
    cases: Sequence[tuple[int, ...]],
    build: Callable[[str, int], nn.Module],
    names: Sequence[str],
    repetitions: int,
) -> dict:
    """Median seconds per (case, implementation, mode); implementations interleaved within a repetition.
    ``build(name, channels)`` makes an implementation."""
    samples: dict = {}
    for shape in cases:
        x = torch.randn(shape)
        xg = x.clone().requires_grad_()
        modules = {name: build(name, shape[1]) for name in names}
        for module in modules.values():  # warm-up
            forward(module, x)
            forward_backward(module, xg)
        for _ in range(repetitions):
            for name, module in modules.items():
                for mode, fn, arg in (("forward", forward, x), ("forward_backward", forward_backward, xg)):
                    start = time.perf_counter()
                    fn(module, arg)
                    samples.setdefault((shape, name, mode), []).append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in samples.items()}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line")


def peak_increase_mb(module: nn.Module, x: torch.Tensor, small: torch.Tensor, mode: str) -> float:
    """Run in a fresh process: peak RSS increase (MB) of one run on ``x`` over the warmed-up process.

    The process has built the module and allocated the input; it warms up on ``small`` (loading kernels and
    libraries), then its peak-RSS mark is reset (Linux /proc/self/clear_refs) and the increase of the peak
    over the resident size at that moment is what the run costs.
    """
    forward(module, small)
    forward_backward(module, small.requires_grad_())
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    baseline_kb = _status_kb("VmRSS")
    if mode == "forward":
        forward(module, x)
    else:
        forward_backward(module, x.requires_grad_())
    return (_status_kb("VmHWM") - baseline_kb) / 1024


def memory_in_subprocesses(
    script: str, cases: Sequence[tuple[int, ...]], names: Sequence[str], threads: int, runs: int
) -> dict:
    """Peak RSS increase (MB) per (case, implementation, mode): the median of ``runs`` fresh processes of
    ``script`` in worker mode."""
    if not Path("/proc/self/clear_refs").exists():
        raise SystemExit("memory measurement needs Linux /proc/self/clear_refs; run with --no-memory")
    results = {}
    for shape in cases:
        for name in names:
            for mode in MODES:
                command = [sys.executable, script, "--memory-worker", name, mode]
                command += ["--threads", str(threads), "--shape", *map(str, shape)]
                peaks = []
                for _ in range(runs):
                    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                    peaks.append(float(output.split()[-1]))
                results[(shape, name, mode)] = statistics.median(peaks)
    return results


def benchmark_arguments(
    argv: Sequence[str] | None, description: str, repetitions: int, quick_repetitions: int, shape_dims: int
) -> argparse.Namespace:
    """The options every benchmark script takes (including the hidden worker mode of
    :func:`memory_in_subprocesses`); sets torch's thread count."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and fewer repetitions")
    parser.add_argument(
        "--repetitions",
        type=int,
        default=None,
        help=f"timed repetitions (default {repetitions}, quick {quick_repetitions})",
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-memory", action="store_true", help="skip the subprocess memory measurements")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--memory-worker", nargs=2, metavar=("IMPL", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--shape", nargs=shape_dims, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.repetitions = args.repetitions or (quick_repetitions if args.quick else repetitions)
    torch.set_num_threads(args.threads)
    return args
