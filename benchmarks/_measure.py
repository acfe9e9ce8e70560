"""What the attention benchmark scripts (``attention.py``, ``video.py``) share: their command line and the
per-case loops around :mod:`ccnet.measure` (which does the timing, the fresh-process peak memory, the FLOPs
and the machine description).

A case is an input shape; an implementation is a name that ``build(name, channels)`` turns into a module;
each is measured in both :data:`MODES`. A script using :func:`memory_cases` defines a module-level
``memory_workload(name, shape, mode)`` (usually :func:`module_workload`) that the memory workers call.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from ccnet.measure import Workload, peak_memory, peak_memory_supported, steady_peak_memory, time_interleaved

MODES = ("forward", "forward_backward")
Case = tuple[int, ...]


def forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module(x)


def forward_backward(module: nn.Module, x: torch.Tensor) -> None:
    x.grad = None
    for p in module.parameters():
        p.grad = None
    module(x).sum().backward()


def module_workload(module: nn.Module, x: torch.Tensor, small: torch.Tensor, mode: str) -> Workload:
    """One ``mode`` run of ``module`` on ``x``, after a warm-up of both modes on the smaller ``small``
    (kernels and libraries load, but the allocator keeps no full-size pools)."""

    def warmup() -> None:
        forward(module, small)
        forward_backward(module, small.requires_grad_())

    def run() -> None:
        if mode == "forward":
            forward(module, x)
        else:
            forward_backward(module, x.requires_grad_())

    return Workload(run=run, warmup=warmup)


def time_cases(
    cases: Sequence[Case], build: Callable[[str, int], nn.Module], names: Sequence[str], repetitions: int
) -> dict[tuple[Case, str, str], float]:
    """Median seconds per (case, implementation, mode); within a case every implementation and mode
    alternates in each repetition (:func:`ccnet.measure.time_interleaved`)."""
    times = {}
    for shape in cases:
        x = torch.randn(shape)
        xg = x.clone().requires_grad_()
        modules = {name: build(name, shape[1]) for name in names}
        functions = {}
        for name, module in modules.items():
            functions[(name, "forward")] = lambda m=module, x=x: forward(m, x)
            functions[(name, "forward_backward")] = lambda m=module, xg=xg: forward_backward(m, xg)
        for (name, mode), seconds in time_interleaved(functions, repetitions).items():
            times[(shape, name, mode)] = seconds
    return times


def memory_cases(
    script: str, cases: Sequence[Case], names: Sequence[str], threads: int, runs: int
) -> dict[tuple[Case, str, str], float]:
    """Peak RSS increase (MB) per (case, implementation, mode): the median of ``runs`` fresh processes
    running ``script``'s ``memory_workload``."""
    if not peak_memory_supported():
        raise SystemExit("memory measurement needs Linux /proc/self/clear_refs; run with --no-memory")
    workload = f"{Path(script).resolve()}:memory_workload"
    results = {}
    for shape in cases:
        for name in names:
            for mode in MODES:
                arguments = {"name": name, "shape": list(shape), "mode": mode}
                measured = peak_memory(workload, arguments, threads=threads, runs=runs)
                results[(shape, name, mode)] = measured.increase_mb
    return results


def steady_training_memory(
    script: str, cases: Sequence[Case], names: Sequence[str], threads: int, steps: int = 4
) -> dict[tuple[Case, str], tuple[float, ...]]:
    """Peak RSS increase (MB) of each of ``steps`` forward+backward steps in one process, per (case,
    implementation) (:func:`ccnet.measure.steady_peak_memory`): what every step of a training loop pays,
    beside :func:`memory_cases`' first full-size step of a fresh process."""
    workload = f"{Path(script).resolve()}:memory_workload"
    return {
        (shape, name): steady_peak_memory(
            workload,
            {"name": name, "shape": list(shape), "mode": "forward_backward"},
            threads=threads,
            steps=steps,
        ).per_step_mb
        for shape in cases
        for name in names
    }


def benchmark_arguments(
    argv: Sequence[str] | None, description: str, repetitions: int, quick_repetitions: int
) -> argparse.Namespace:
    """The options every attention benchmark takes; sets torch's thread count."""
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
    args = parser.parse_args(argv)
    args.repetitions = args.repetitions or (quick_repetitions if args.quick else repetitions)
    torch.set_num_threads(args.threads)
    return args
