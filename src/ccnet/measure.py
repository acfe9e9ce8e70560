"""Measurement helpers shared by ``ccnet bench``, ``ccnet info`` and ``benchmarks/``.

- **Machine**: :func:`machine` describes this process's machine (CPU model, its vector / matrix instruction
  flags, threads in use, memory, torch version); :func:`describe_machine` makes the one line every report
  prints.
- **Time**: :func:`time_interleaved` returns median seconds of functions run in alternating order.
- **Peak memory**: :func:`peak_memory` runs a *workload* in fresh Python processes and reports the peak
  resident memory (RSS) during one run; :func:`steady_peak_memory` runs it several times in one process and
  reports each step's peak (the steady state, after the first step has sized the allocator's pools). A
  workload is named ``"module:function"`` or ``"path/to/script.py:function"``; the function receives the
  JSON-serialisable ``arguments`` as keywords and returns a :class:`Workload` (what to warm up with, what to
  measure). Each process runs ``python -m ccnet.measure JSON`` (the worker protocol below) and prints a
  :class:`PeakMemory` (:class:`SteadyPeakMemory`) as JSON.
- **FLOPs**: :func:`flop_counter` is ``torch.utils.flop_counter.FlopCounterMode`` that also counts the oneDNN
  convolution the ops' CPU path calls; :func:`count_flops` counts one call.

Only torch and the standard library are imported, so the CLI and the benchmark scripts can use this module
cheaply; importing it registers nothing (the FLOP formula is registered on the first :func:`flop_counter`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import importlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch.utils import flop_counter as torch_flop_counter

__all__ = [
    "PeakMemory",
    "SteadyPeakMemory",
    "Workload",
    "count_flops",
    "cpu_flags",
    "cpu_name",
    "describe_machine",
    "flop_counter",
    "machine",
    "peak_memory",
    "peak_memory_supported",
    "steady_peak_memory",
    "time_interleaved",
]

Key = TypeVar("Key", bound=Hashable)

# /proc/cpuinfo flags that decide which kernels run: x86 vector and matrix extensions, Arm SIMD.
_INSTRUCTION_SET_PREFIXES = ("avx", "amx", "fma", "asimd", "sve")


# --- machine ------------------------------------------------------------------------------------------------
def _cpuinfo_value(*keys: str) -> str | None:
    """The first ``key : value`` of /proc/cpuinfo whose key is in ``keys`` (None off Linux)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() in keys:
            return value.strip()
    return None


def cpu_name() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    return _cpuinfo_value("model name") or platform.processor() or "unknown CPU"


def cpu_flags() -> list[str]:
    """The CPU's vector / matrix instruction-set flags (x86 ``avx*``, ``fma``, ``amx*``; Arm ``asimd*``,
    ``sve*``), sorted; empty where /proc/cpuinfo is not available."""
    flags = (_cpuinfo_value("flags", "Features") or "").split()
    return sorted({flag for flag in flags if flag.startswith(_INSTRUCTION_SET_PREFIXES)})


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    """This process's machine, JSON-serialisable: ``cpu`` (model name), ``cpu_flags`` (:func:`cpu_flags`),
    ``cpu_capability`` (the kernel level torch chose, e.g. ``AVX2``), ``cpu_count`` (logical cores),
    ``threads`` (torch intra-op threads now), ``memory_gb``, ``platform``, ``python``, ``torch``, ``cuda``."""
    return {
        "cpu": cpu_name(),
        "cpu_flags": cpu_flags(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "memory_gb": _memory_gb(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
    }


def describe_machine(info: Mapping[str, Any] | None = None) -> str:
    """One line naming the CPU, its flags, the thread count and torch, e.g. ``AMD EPYC (avx avx2 fma),
    2 threads, torch 2.4.1`` for ``info`` (default: :func:`machine` now)."""
    info = machine() if info is None else info
    # results written before the flags were recorded name the CPU "processor" and have no flags
    cpu = info.get("cpu") or info.get("processor") or "unknown CPU"
    flags = info.get("cpu_flags")
    flags_text = "" if flags is None else f" ({' '.join(flags) or 'no vector flags found'})"
    return f"{cpu}{flags_text}, {info.get('threads')} threads, torch {info.get('torch')}"


# --- time ---------------------------------------------------------------------------------------------------
def time_interleaved(
    functions: Mapping[Key, Callable[[], object]], repetitions: int, *, warmup: int = 1
) -> dict[Key, float]:
    """Median seconds per call of each function after ``warmup`` calls each.

    Every repetition calls each function once, in reversed order every other repetition: the load of a
    shared machine and order effects (caches, the allocator's state) then affect all of them alike, so
    their ratios are fair even when absolute times drift.
    """
    for function in functions.values():
        for _ in range(warmup):
            function()
    samples: dict[Key, list[float]] = {key: [] for key in functions}
    names = list(functions)
    for repetition in range(repetitions):
        for key in names if repetition % 2 == 0 else reversed(names):
            start = time.perf_counter()
            functions[key]()
            samples[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in samples.items()}


# --- peak memory --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    """What a memory worker measures: ``run`` once, after ``warmup`` (default: one call of ``run``) has
    loaded kernels and libraries and sized the allocator's pools."""

    run: Callable[[], object]
    warmup: Callable[[], object] | None = None


@dataclass(frozen=True)
class PeakMemory:
    """Peak resident memory of one run: ``peak_mb`` is the process's high-water mark during the run,
    ``increase_mb`` that mark minus the resident size just before the run (what the run itself costs)."""

    peak_mb: float
    increase_mb: float


@dataclass(frozen=True)
class SteadyPeakMemory:
    """Peak RSS increase of each of several runs in one process (``per_step_mb``), each measured from the
    resident size just before that run after freed heap pages went back to the OS, and ``steady_mb``, the
    median over the steps after the first (which also pays for one-time state: pools, caches, kernels)."""

    per_step_mb: tuple[float, ...]
    steady_mb: float


def peak_memory_supported() -> bool:
    """Whether :func:`peak_memory` works here (Linux: the peak mark is reset via /proc/self/clear_refs)."""
    return Path("/proc/self/clear_refs").exists()


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line")


def _measure_here(workload: Workload) -> PeakMemory:
    (workload.warmup or workload.run)()
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark VmHWM to the current RSS
    baseline_kb = _status_kb("VmRSS")
    workload.run()
    peak_kb = _status_kb("VmHWM")
    return PeakMemory(peak_kb / 1024, (peak_kb - baseline_kb) / 1024)


def _return_freed_heap() -> None:
    """Collect garbage and give freed heap pages back to the OS (glibc's ``malloc_trim``), so that the next
    step's peak counts what it allocates, not what an earlier step left in the allocator's free lists."""
    gc.collect()
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if not hasattr(libc, "malloc_trim"):
        raise RuntimeError("steady-state peaks need glibc's malloc_trim (this C library has none)")
    libc.malloc_trim(0)


def _measure_steps(workload: Workload, steps: int) -> SteadyPeakMemory:
    (workload.warmup or workload.run)()
    increases = []
    for _ in range(steps):
        _return_freed_heap()
        Path("/proc/self/clear_refs").write_text("5")
        baseline_kb = _status_kb("VmRSS")
        workload.run()
        increases.append((_status_kb("VmHWM") - baseline_kb) / 1024)
    return SteadyPeakMemory(tuple(increases), statistics.median(increases[1:]))


def _load_workload(target: str) -> Callable[..., Workload]:
    """The function named by ``"module:function"`` or ``"path/to/script.py:function"``."""
    location, _, name = target.rpartition(":")
    if not location or not name:
        raise ValueError(f"workload: expected 'module:function' or 'script.py:function', got {target!r}")
    if not location.endswith(".py"):
        return getattr(importlib.import_module(location), name)
    path = Path(location).resolve()
    sys.path.insert(0, str(path.parent))  # scripts import their siblings (benchmarks/_measure.py)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"workload: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses and pickling look classes up by module name
    spec.loader.exec_module(module)
    return getattr(module, name)


def peak_memory(
    workload: str, arguments: Mapping[str, Any] | None = None, *, threads: int = 1, runs: int = 1
) -> PeakMemory:
    """Peak memory of one run of ``workload`` (see the module docstring), each field the median over
    ``runs`` fresh processes with ``threads`` torch threads.

    A fresh process per run: the allocator's pools and the high-water mark of a process that ran other work
    would hide or inflate what this run needs. Raises RuntimeError off Linux and when a worker fails (with
    its error output).
    """
    if not peak_memory_supported():
        raise RuntimeError("peak memory needs Linux /proc/self/clear_refs; skip the memory measurements")
    request = {"workload": workload, "arguments": dict(arguments or {}), "threads": threads}
    measured = [PeakMemory(**json.loads(_run_worker(request)[-1])) for _ in range(runs)]
    return PeakMemory(
        statistics.median(m.peak_mb for m in measured), statistics.median(m.increase_mb for m in measured)
    )


def steady_peak_memory(
    workload: str, arguments: Mapping[str, Any] | None = None, *, threads: int = 1, steps: int = 4
) -> SteadyPeakMemory:
    """Per-step peak memory of ``steps`` runs of ``workload`` in one fresh process (see
    :class:`SteadyPeakMemory`): what a training loop pays on every step, where :func:`peak_memory` measures a
    process's first full-size run. ``steps`` >= 2. Raises RuntimeError off Linux / glibc and when the worker
    fails."""
    if steps < 2:
        raise ValueError(
            f"steady_peak_memory: steps must be >= 2 (the first step is not steady), got {steps}"
        )
    if not peak_memory_supported():
        raise RuntimeError("peak memory needs Linux /proc/self/clear_refs; skip the memory measurements")
    request = {"workload": workload, "arguments": dict(arguments or {}), "threads": threads, "steps": steps}
    measured = json.loads(_run_worker(request)[-1])
    return SteadyPeakMemory(tuple(measured["per_step_mb"]), measured["steady_mb"])


def _run_worker(request: Mapping[str, Any]) -> list[str]:
    """Run one memory worker process and return its output lines."""
    command = [sys.executable, "-m", "ccnet.measure", json.dumps(request)]
    env = {**os.environ, "OMP_NUM_THREADS": str(request["threads"])}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        failure = done.stderr[-3000:]
        raise RuntimeError(f"memory worker {request['workload']} {request['arguments']} failed:\n{failure}")
    return done.stdout.strip().splitlines()


def _worker(request: str) -> None:
    """``python -m ccnet.measure '{"workload": ..., "arguments": {...}, "threads": N[, "steps": S]}'``: build
    the workload, measure it (one run, or S steps), print the :class:`PeakMemory` (:class:`SteadyPeakMemory`)
    as JSON on the last line."""
    spec = json.loads(request)
    torch.set_num_threads(int(spec["threads"]))
    workload = _load_workload(spec["workload"])(**spec["arguments"])
    measured = _measure_steps(workload, spec["steps"]) if "steps" in spec else _measure_here(workload)
    print(json.dumps(asdict(measured)), flush=True)


# --- FLOPs --------------------------------------------------------------------------------------------------
def _onednn_convolution_flops(
    x_shape, w_shape, bias, padding, stride, dilation, groups, *, out_shape, **kwargs
) -> int:
    return torch_flop_counter.conv_flop_count(x_shape, w_shape, out_shape)


def flop_counter() -> torch_flop_counter.FlopCounterMode:
    """``FlopCounterMode(display=False)`` (use as ``with flop_counter() as counter:``; a multiply-add is
    2 FLOPs) that also counts ``torch.ops.aten.mkldnn_convolution``.

    torch's counter knows ``F.conv2d`` but not the oneDNN op the attention ops' CPU path calls directly, so
    without the formula registered here their 1x1 projections would count 0 FLOPs. It is registered on the
    first call, not at import, so that importing ccnet leaves torch's global registry alone.
    """
    if torch.ops.aten.mkldnn_convolution not in torch_flop_counter.flop_registry:
        torch_flop_counter.register_flop_formula(torch.ops.aten.mkldnn_convolution)(_onednn_convolution_flops)
    return torch_flop_counter.FlopCounterMode(display=False)


def count_flops(function: Callable[[], object]) -> int:
    """FLOPs of one call of ``function`` under ``torch.no_grad()`` (see :func:`flop_counter`)."""
    with torch.no_grad(), flop_counter() as counter:
        function()
    return int(counter.get_total_flops())


if __name__ == "__main__":
    _worker(sys.argv[1])
