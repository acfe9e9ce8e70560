"""The efficiency report (``ccnet bench``): the paper's efficiency table, a scaling plot and throughput.

1. **Efficiency table** (the paper's: R-50 CCNet, 769x769 input = 97x97 stride-8 features, C=512):
   whole-model forward FLOPs (:func:`ccnet.measure.count_flops`, a multiply-add = 2 FLOPs) of the FCN twin
   (``fcn_r50_d8``) and of the same network with RCCA R=1, R=2, one non-local block (``nonlocal_r50_d8``'s
   :class:`~ccnet.models.heads.NonLocal2d`) and two non-local blocks in a row (no registered model has two;
   the head's context module is applied as ``nn.Sequential(block, copy of block)``). The variants differ
   only in ``head.context``, so a model's FLOPs = the FCN twin's (counted on the ``meta`` device) + its
   context module's (counted on a real (1, 512, 97, 97) tensor). Training-memory and time increments are
   measured **at the context-module level** on the same (1, 512, 97, 97) features (the FCN twin's context
   is the identity, so the module is the whole increment): peak RSS increase of a forward+backward (and of
   an inference forward) over a warmed-up fresh process (:func:`ccnet.measure.peak_memory`), median of
   ``memory_runs`` processes; time = median of interleaved repetitions
   (:func:`ccnet.measure.time_interleaved`).
2. **Scaling plot**: inference time and peak memory of RCCA R=2 vs one non-local block as the feature map
   grows, on log axes with O(HW(H+W)) and O((HW)^2) reference slopes (PNG, needs matplotlib).
3. **Throughput** of the whole CCNet R-50-D8 (random weights) on the CPU: images/s for inference (batch
   1) and for a training step (batch 1: forward, cross-entropy on both heads, backward, SGD step) at
   512x1024 and 769x769.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ccnet.measure import Workload, count_flops, peak_memory, time_interleaved
from ccnet.reproduce.bench_report import bench_markdown, scaling_plot
from ccnet.reproduce.report import environment, write_report

__all__ = [
    "CONTEXTS",
    "PAPER",
    "BenchSettings",
    "baseline_flops",
    "build_context",
    "context_flops",
    "context_workload",
    "efficiency_table",
    "measure_peak_memory",
    "run_bench",
    "scaling",
    "throughput",
]

# context-module kinds of the efficiency table: key -> (label, registered model the block comes from)
CONTEXTS: dict[str, tuple[str, str]] = {
    "rcca_r1": ("RCCA R=1", "ccnet_r50_d8"),
    "rcca_r2": ("RCCA R=2", "ccnet_r50_d8"),
    "nonlocal_x1": ("non-local x1", "nonlocal_r50_d8"),
    "nonlocal_x2": ("non-local x2", "nonlocal_r50_d8"),
}
PAPER = {  # the paper's increments over the baseline: GFLOPs, training memory MB
    "rcca_r2": (16.5, 127.0),
    "nonlocal_x1": (108.0, 1411.0),
}


@dataclass
class BenchSettings:
    """Sizes and repetitions. ``input_size``: the efficiency table's image (H, W); ``scaling_sizes``: the
    feature-map sides of the scaling plot; ``throughput_sizes``: whole-model input sizes."""

    input_size: tuple[int, int] = (769, 769)
    channels: int = 512
    repetitions: int = 3
    memory_runs: int = 3
    memory: bool = True
    scaling_sizes: tuple[int, ...] = (16, 32, 48, 64, 96, 128)
    scaling_channels: int = 512
    scaling_repetitions: int = 2
    throughput_sizes: tuple[tuple[int, int], ...] = ((512, 1024), (769, 769))
    throughput_repetitions: int = 1
    threads: int | None = None  # torch threads (default: torch's)

    @classmethod
    def quick(cls) -> BenchSettings:
        """Small sizes: 257x257 input, C=64 for the scaling plot, tiny throughput."""
        return cls(
            input_size=(257, 257),
            repetitions=2,
            memory_runs=1,
            scaling_sizes=(8, 16, 24, 32),
            scaling_channels=64,
            scaling_repetitions=1,
            throughput_sizes=((129, 129),),
            throughput_repetitions=1,
        )


# --- context modules ---------------------------------------------------------------------------------
def build_context(kind: str, channels: int) -> nn.Module:
    """The context module ``kind`` (a key of :data:`CONTEXTS`) exactly as the R-50 models build it, with
    nonzero residual weights (a fresh RCCA / non-local block is the identity): (B, C, H, W) -> same."""
    from ccnet.models import HeadConfig
    from ccnet.models.heads import make_context

    torch.manual_seed(0)
    if kind.startswith("rcca"):
        module = make_context(HeadConfig(context="rcca", recurrence=int(kind[-1]), channels=channels))
        with torch.no_grad():
            module.cca.gamma.fill_(0.5)
        return module
    if kind.startswith("nonlocal"):
        block = make_context(HeadConfig(context="nonlocal", channels=channels))
        with torch.no_grad():
            block.norm.weight.fill_(1.0)
        return block if kind == "nonlocal_x1" else nn.Sequential(block, copy.deepcopy(block))
    raise ValueError(f"unknown context kind {kind!r}; expected one of {list(CONTEXTS)}")


def context_flops(kind: str, shape: Sequence[int]) -> int:
    """Forward FLOPs of the context module ``kind`` on a (B, C, H, W) input."""
    module = build_context(kind, shape[1]).eval()
    x = torch.randn(*shape)
    return count_flops(lambda: module(x))


def baseline_flops(input_size: tuple[int, int], num_classes: int = 19) -> tuple[int, tuple[int, ...]]:
    """(FLOPs of ``fcn_r50_d8`` at (1, 3, H, W), shape of its context-module input), counted on the
    ``meta`` device (shapes only, no compute)."""
    from ccnet.models import create_model

    with torch.device("meta"):
        model = create_model("fcn_r50_d8", num_classes=num_classes).eval()
        x = torch.zeros(1, 3, *input_size)
    seen: dict[str, tuple[int, ...]] = {}
    handle = model.head.context.register_forward_pre_hook(
        lambda m, inputs: seen.__setitem__("shape", tuple(inputs[0].shape))
    )
    try:
        flops = count_flops(lambda: model(x))
    finally:
        handle.remove()
    return flops, seen["shape"]


# --- memory (fresh processes) ------------------------------------------------------------------------
def _forward(module: nn.Module, x: Tensor) -> None:
    with torch.no_grad():
        module(x)


def _forward_backward(module: nn.Module, x: Tensor) -> None:
    x.grad = None
    for p in module.parameters():
        p.grad = None
    module(x).sum().backward()


def context_workload(kind: str, shape: Sequence[int], mode: str) -> Workload:
    """One ``mode`` ("forward" or "train") run of the context module ``kind`` on a (B, C, H, W) input, for
    :func:`ccnet.measure.peak_memory`. The module and the input exist before the run; the warm-up runs both
    modes at a quarter of the size (kernels and libraries load, but the allocator keeps no full-size
    pools)."""
    module = build_context(kind, shape[1])
    module.train(mode == "train")
    x = torch.randn(*shape)
    small = torch.randn(*shape[:2], *(max(2, s // 4) for s in shape[2:]))

    def warmup() -> None:
        _forward(module, small)
        _forward_backward(module, small.requires_grad_())

    def run() -> None:
        if mode == "forward":
            _forward(module.eval(), x)
        else:
            _forward_backward(module, x.requires_grad_())

    return Workload(run=run, warmup=warmup)


def measure_peak_memory(kind: str, shape: Sequence[int], mode: str, runs: int = 3, threads: int = 1) -> float:
    """Peak RSS increase (MB) of one :func:`context_workload` run: the median over ``runs`` fresh
    processes."""
    arguments = {"kind": kind, "shape": list(shape), "mode": mode}
    return peak_memory(f"{__name__}:context_workload", arguments, threads=threads, runs=runs).increase_mb


# --- 1. the efficiency table -----------------------------------------------------------------------------
def efficiency_table(
    settings: BenchSettings, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Rows for the FCN twin and each of :data:`CONTEXTS` (see the module docstring) + the paper's ratios."""
    say = progress or (lambda text: None)
    say("FLOPs")
    base, shape = baseline_flops(settings.input_size)
    shape = (1, settings.channels, *shape[2:])
    flops = {kind: context_flops(kind, shape) for kind in CONTEXTS}
    say("module time")
    modules = {kind: build_context(kind, shape[1]) for kind in CONTEXTS}
    x = torch.randn(*shape)
    xg = x.clone().requires_grad_()
    functions: dict[str, Callable[[], Any]] = {}
    for kind, module in modules.items():
        functions[f"{kind}/forward"] = lambda m=module: _forward(m.eval(), x)
        functions[f"{kind}/train"] = lambda m=module, g=xg: _forward_backward(m.train(), g)
    times = time_interleaved(functions, settings.repetitions)
    del modules, functions, xg
    memory: dict[str, float] = {}
    if settings.memory:
        for kind in CONTEXTS:
            for mode in ("forward", "train"):
                say(f"memory {kind} {mode}")
                memory[f"{kind}/{mode}"] = measure_peak_memory(
                    kind, shape, mode, settings.memory_runs, settings.threads or torch.get_num_threads()
                )
    rows = [{"key": "fcn", "label": "FCN twin (no context)", "gflops": base / 1e9, "delta_gflops": 0.0}]
    for kind, (label, model) in CONTEXTS.items():
        row: dict[str, Any] = {
            "key": kind,
            "label": label,
            "model": model,
            "gflops": (base + flops[kind]) / 1e9,
            "delta_gflops": flops[kind] / 1e9,
            "forward_ms": 1e3 * times[f"{kind}/forward"],
            "train_ms": 1e3 * times[f"{kind}/train"],
        }
        if memory:
            row["delta_train_mb"] = memory[f"{kind}/train"]
            row["delta_infer_mb"] = memory[f"{kind}/forward"]
        if kind in PAPER:
            row["paper_delta_gflops"], row["paper_delta_train_mb"] = PAPER[kind]
        rows.append(row)
    by_key = {r["key"]: r for r in rows}
    ratios = {"flop_reduction": 1 - by_key["rcca_r2"]["delta_gflops"] / by_key["nonlocal_x1"]["delta_gflops"]}
    if memory:
        ratios["memory_ratio"] = by_key["nonlocal_x1"]["delta_train_mb"] / max(
            by_key["rcca_r2"]["delta_train_mb"], 1e-9
        )
    return {"input_size": list(settings.input_size), "feature_shape": list(shape), "rows": rows, **ratios}


# --- 2. scaling -------------------------------------------------------------------------------------------
def scaling(settings: BenchSettings, progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Per feature side s in ``settings.scaling_sizes``: inference ms (median) and peak inference memory MB
    (one fresh process) of RCCA R=2 and one non-local block on (1, C, s, s)."""
    say = progress or (lambda text: None)
    rows = []
    for side in settings.scaling_sizes:
        shape = (1, settings.scaling_channels, side, side)
        say(f"scaling {side}x{side}")
        x = torch.randn(*shape)
        modules = {kind: build_context(kind, shape[1]).eval() for kind in ("rcca_r2", "nonlocal_x1")}
        times = time_interleaved(
            {kind: (lambda m=m, x=x: _forward(m, x)) for kind, m in modules.items()},
            settings.scaling_repetitions,
        )
        for kind in modules:
            row = {"kind": kind, "side": side, "pixels": side * side, "forward_ms": 1e3 * times[kind]}
            if settings.memory:
                row["infer_mb"] = measure_peak_memory(
                    kind, shape, "forward", 1, settings.threads or torch.get_num_threads()
                )
            rows.append(row)
    return rows


# --- 3. whole-model throughput ----------------------------------------------------------------------------
def throughput(
    settings: BenchSettings, progress: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Images/s of ``ccnet_r50_d8`` (R=2, random weights, 19 classes) at each size: inference (eval, batch
    1) and a training step (batch 1; forward, CE on out + 0.4 x aux, backward, SGD step)."""
    from ccnet.models import create_model

    say = progress or (lambda text: None)
    torch.manual_seed(0)
    model = create_model("ccnet_r50_d8", num_classes=19)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    rows = []
    for height, width in settings.throughput_sizes:
        say(f"throughput {height}x{width}")
        x = torch.randn(1, 3, height, width)
        target = torch.randint(0, 19, (1, height, width))

        def infer(x: Tensor = x) -> None:
            model.eval()
            with torch.no_grad():
                model(x)

        def step(x: Tensor = x, target: Tensor = target) -> None:
            model.train()
            out = model(x)
            loss = nn.functional.cross_entropy(out.out, target)
            if out.aux is not None:
                loss = loss + 0.4 * nn.functional.cross_entropy(out.aux, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        times = time_interleaved({"infer": infer, "train": step}, settings.throughput_repetitions)
        rows.append(
            {
                "size": [height, width],
                "infer_s": times["infer"],
                "train_s": times["train"],
                "infer_images_per_s": 1 / times["infer"],
                "train_images_per_s": 1 / times["train"],
            }
        )
    return rows


# --- the whole report ------------------------------------------------------------------------------------
def run_bench(
    out_dir: str | os.PathLike, settings: BenchSettings | None = None, *, progress: bool = True
) -> dict[str, Any]:
    """Run the three parts and write ``bench.json``, ``bench.md``, ``scaling.png`` (if matplotlib is
    installed; else a note) and ``report.md`` into ``out_dir``. Returns the JSON content."""
    from tqdm import tqdm

    settings = settings or BenchSettings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    saved_threads = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    bar = tqdm(total=3, desc="bench", unit="part", disable=not progress)

    def say(text: str) -> None:
        bar.set_postfix_str(text)

    started = time.perf_counter()
    try:
        env = environment()
        efficiency = efficiency_table(settings, say)
        bar.update(1)
        scaling_rows = scaling(settings, say)
        for row in scaling_rows:
            row["channels"] = settings.scaling_channels
        bar.update(1)
        throughput_rows = throughput(settings, say)
        bar.update(1)
    finally:
        bar.close()
        threads = torch.get_num_threads()
        torch.set_num_threads(saved_threads)
    plot, plot_error = None, None
    try:
        plot = scaling_plot(scaling_rows, out / "scaling.png").name
    except ImportError as err:
        plot_error = str(err)
    result = {
        "environment": env,
        "settings": asdict(settings),
        "threads": threads,
        "efficiency": efficiency,
        "scaling": scaling_rows,
        "throughput": throughput_rows,
        "plot": plot,
        "plot_error": plot_error,
        "seconds": time.perf_counter() - started,
    }
    (out / "bench.json").write_text(json.dumps(result, indent=2))
    (out / "bench.md").write_text(bench_markdown(result))
    write_report(out, env)
    return result
