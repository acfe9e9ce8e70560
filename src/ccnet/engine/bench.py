"""The efficiency report (``ccnet bench``): the paper's efficiency table, a scaling plot and throughput.

1. **Efficiency table** (the paper's: R-50 CCNet, 769x769 input = 97x97 stride-8 features, C=512):
   whole-model forward FLOPs (``torch.utils.flop_counter``, a multiply-add = 2 FLOPs) of the FCN twin
   (``fcn_r50_d8``) and of the same network with RCCA R=1, R=2, one non-local block (``nonlocal_r50_d8``'s
   :class:`~ccnet.models.heads.NonLocal2d`) and two non-local blocks in a row (no registered model has two;
   the head's context module is applied as ``nn.Sequential(block, copy of block)``). The variants differ
   only in ``head.context``, so a model's FLOPs = the FCN twin's (counted on the ``meta`` device) + its
   context module's (counted on a real (1, 512, 97, 97) tensor). Training-memory and time increments are
   measured **at the context-module level** on the same (1, 512, 97, 97) features (the FCN twin's context
   is the identity, so the module is the whole increment): peak RSS increase of a forward+backward (and of
   an inference forward) over a warmed-up fresh process, median of 3 processes; time = median of
   interleaved repetitions.
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
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "CONTEXTS",
    "BenchSettings",
    "build_context",
    "context_flops",
    "efficiency_table",
    "measure_peak_memory",
    "run_bench",
    "scaling",
    "scaling_plot",
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
PAPER_FLOP_REDUCTION = 0.85
PAPER_MEMORY_RATIO = 11.0


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
        """Small sizes (about a minute): 257x257 input, C=64 for the scaling plot, tiny throughput."""
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
    from ccnet.models.heads import make_context

    torch.manual_seed(0)
    if kind.startswith("rcca"):
        module = make_context("rcca", channels, recurrence=int(kind[-1]))
        with torch.no_grad():
            module.cca.gamma.fill_(0.5)
        return module
    if kind.startswith("nonlocal"):
        block = make_context("nonlocal", channels)
        with torch.no_grad():
            block.norm.weight.fill_(1.0)
        return block if kind == "nonlocal_x1" else nn.Sequential(block, copy.deepcopy(block))
    raise ValueError(f"unknown context kind {kind!r}; expected one of {list(CONTEXTS)}")


def _flops(fn: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def context_flops(kind: str, shape: Sequence[int]) -> int:
    """Forward FLOPs of the context module ``kind`` on a (B, C, H, W) input."""
    module = build_context(kind, shape[1]).eval()
    x = torch.randn(*shape)
    return _flops(lambda: module(x))


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
        flops = _flops(lambda: model(x))
    finally:
        handle.remove()
    return flops, seen["shape"]


# --- memory (fresh processes) ------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line")


def _forward(module: nn.Module, x: Tensor) -> None:
    with torch.no_grad():
        module(x)


def _forward_backward(module: nn.Module, x: Tensor) -> None:
    x.grad = None
    for p in module.parameters():
        p.grad = None
    module(x).sum().backward()


def memory_worker(kind: str, shape: Sequence[int], mode: str) -> float:
    """In a fresh process: peak RSS increase (MB) of one ``mode`` ("forward" or "train") run of the
    context module over the process after it built the module, allocated the input and warmed up at a
    quarter of the size (the peak mark is reset through Linux /proc/self/clear_refs)."""
    module = build_context(kind, shape[1])
    module.train(mode == "train")
    x = torch.randn(*shape)
    small = torch.randn(*shape[:2], *(max(2, s // 4) for s in shape[2:]))
    _forward(module, small)
    _forward_backward(module, small.requires_grad_())
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    baseline_kb = _status_kb("VmRSS")
    if mode == "forward":
        _forward(module.eval(), x)
    else:
        _forward_backward(module, x.requires_grad_())
    return (_status_kb("VmHWM") - baseline_kb) / 1024


def measure_peak_memory(kind: str, shape: Sequence[int], mode: str, runs: int = 3, threads: int = 1) -> float:
    """Median over ``runs`` fresh subprocesses of :func:`memory_worker` (MB)."""
    if not Path("/proc/self/clear_refs").exists():
        raise RuntimeError("peak memory needs Linux /proc/self/clear_refs; use memory=False / --no-memory")
    command = [sys.executable, "-m", "ccnet.engine.bench", kind, mode, str(threads), *map(str, shape)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    peaks = []
    for _ in range(runs):
        output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
        peaks.append(float(output.split()[-1]))
    return statistics.median(peaks)


# --- timing --------------------------------------------------------------------------------------------
def time_interleaved(
    functions: dict[str, Callable[[], Any]], repetitions: int, warmup: int = 1
) -> dict[str, float]:
    """Median seconds per function; the functions alternate within each repetition (a shared machine's
    load then affects all of them alike)."""
    for fn in functions.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {key: [] for key in functions}
    for _ in range(repetitions):
        for key, fn in functions.items():
            start = time.perf_counter()
            fn()
            samples[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in samples.items()}


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


def scaling_plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Log-log PNG: time (and memory, if measured) vs HW for RCCA and non-local, with reference slopes
    O(HW(H+W)) ~ (HW)^1.5 and O((HW)^2) anchored at each series' largest size. Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(
            "the scaling plot needs matplotlib: pip install 'ccnet-seg[plot]' (or pip install matplotlib)"
        ) from err
    import numpy as np

    metrics = [("forward_ms", "inference time (ms)")]
    if all("infer_mb" in r for r in rows):
        metrics.append(("infer_mb", "peak memory increase (MB)"))
    figure, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4), dpi=90, squeeze=False)
    styles = {"rcca_r2": ("RCCA R=2", "tab:blue", 1.5), "nonlocal_x1": ("non-local", "tab:red", 2.0)}
    for ax, (metric, title) in zip(axes[0], metrics, strict=True):
        for kind, (label, colour, slope) in styles.items():
            series = [r for r in rows if r["kind"] == kind]
            if not series:
                continue
            hw = np.array([r["pixels"] for r in series], dtype=float)
            values = np.array([max(r[metric], 1e-3) for r in series], dtype=float)
            ax.plot(hw, values, "o-", color=colour, label=label)
            reference = values[-1] * (hw / hw[-1]) ** slope
            name = "O(HW(H+W))" if slope == 1.5 else "O((HW)²)"
            ax.plot(hw, reference, "--", color=colour, alpha=0.5, label=f"{name} slope")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("feature pixels HW")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    channels = rows[0].get("channels")
    figure.suptitle("RCCA vs non-local as the feature map grows" + (f" (C={channels})" if channels else ""))
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


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
def bench_markdown(result: dict[str, Any]) -> str:
    """The ``ccnet bench`` section of report.md from the JSON content of :func:`run_bench`."""
    from ccnet.engine.report import markdown_table

    s, table = result["settings"], result["efficiency"]
    h, w = table["input_size"]
    _, c, fh, fw = table["feature_shape"]
    quick = tuple(s["input_size"]) != (769, 769)
    memory = "delta_train_mb" in table["rows"][1]
    rows = []
    for r in table["rows"]:
        paper = (
            f"+{r['paper_delta_gflops']:.1f} / +{r['paper_delta_train_mb']:.0f}"
            if "paper_delta_gflops" in r
            else ""
        )
        rows.append(
            [
                r["label"],
                f"{r['gflops']:.1f}",
                f"+{r['delta_gflops']:.1f}" if r["key"] != "fcn" else "-",
                f"+{r['delta_train_mb']:.0f}" if "delta_train_mb" in r else "-",
                f"+{r['delta_infer_mb']:.0f}" if "delta_infer_mb" in r else "-",
                f"{r['forward_ms']:.0f}" if "forward_ms" in r else "-",
                f"{r['train_ms']:.0f}" if "train_ms" in r else "-",
                paper,
            ]
        )
    lines = [
        "## `ccnet bench`: efficiency" + (" (quick)" if quick else ""),
        "",
        f"### The paper's efficiency table (R-50, {h}x{w} input, {fh}x{fw}x{c} features)",
        "",
        markdown_table(
            [
                "network",
                "GFLOPs",
                "Δ GFLOPs",
                "Δ train MB",
                "Δ infer MB",
                "context fwd ms",
                "context fwd+bwd ms",
                "paper Δ GFLOPs / Δ MB",
            ],
            rows,
        ),
        "",
        "GFLOPs: whole-network forward (`torch.utils.flop_counter`, a multiply-add = 2 FLOPs, batch 1, "
        "19 classes); the variants differ only in the head's context module (the FCN twin's is the "
        "identity), so the FCN twin is counted on the `meta` device and each context module on real "
        f"(1, {c}, {fh}, {fw}) features. Memory and time are measured **at the context-module level** on "
        "those features (the whole increment over the FCN twin): peak RSS increase of one forward+backward "
        "(train) or inference forward over a warmed-up fresh process, median of "
        f"{s['memory_runs']} process(es); times are medians of {s['repetitions']} interleaved repetition(s) "
        f"with {result['threads']} thread(s). *non-local x2* = two non-local blocks in a row "
        "(`nn.Sequential(block, copy)`: no registered model has two). The non-local block is "
        "`nonlocal_r50_d8`'s (mmseg layout: C/2 inner channels, 1x1 output conv + norm).",
        "",
    ]
    reduction = table["flop_reduction"]
    verdict = [
        f"- FLOPs: RCCA R=2 adds {reduction:.1%} fewer FLOPs than one non-local block "
        f"(paper: ~{PAPER_FLOP_REDUCTION:.0%}) -> "
        + ("**holds**" if reduction >= PAPER_FLOP_REDUCTION - 0.02 else "**does not hold**"),
    ]
    if memory:
        ratio = table["memory_ratio"]
        verdict.append(
            f"- Training memory: one non-local block needs {ratio:.1f}x the increment of RCCA R=2 "
            f"(paper: ~{PAPER_MEMORY_RATIO:g}x, GPU) -> "
            + ("**holds**" if ratio >= 0.8 * PAPER_MEMORY_RATIO else "**lower than the paper's**")
        )
    lines += [*verdict, ""]
    scaling_rows = result.get("scaling") or []
    if scaling_rows:
        lines += [f"### Scaling (C={s['scaling_channels']}, inference)", ""]
        if result.get("plot"):
            lines += [f"![scaling]({result['plot']})", ""]
        header = ["feature map", "RCCA R=2 ms", "non-local ms", "ratio"]
        with_memory = all("infer_mb" in r for r in scaling_rows)
        if with_memory:
            header += ["RCCA R=2 MB", "non-local MB", "ratio"]
        table_rows = []
        for side in s["scaling_sizes"]:
            a = next(r for r in scaling_rows if r["side"] == side and r["kind"] == "rcca_r2")
            b = next(r for r in scaling_rows if r["side"] == side and r["kind"] == "nonlocal_x1")
            row = [f"{side}x{side}", f"{a['forward_ms']:.1f}", f"{b['forward_ms']:.1f}"]
            row.append(f"{b['forward_ms'] / max(a['forward_ms'], 1e-9):.1f}x")
            if with_memory:
                row += [f"{a['infer_mb']:.0f}", f"{b['infer_mb']:.0f}"]
                row.append(f"{b['infer_mb'] / max(a['infer_mb'], 1e-9):.1f}x" if a["infer_mb"] > 1 else "-")
            table_rows.append(row)
        lines += [
            markdown_table(header, table_rows),
            "",
            "Inference forward time (median of "
            f"{s['scaling_repetitions']}) and peak RSS increase (one fresh process each; small sizes are "
            "within the allocator's noise) of one module on (1, C, s, s). Criss-cross attention costs "
            "O(HW(H+W)) = O(s^3), a non-local block O((HW)^2) = O(s^4); the dashed lines show those slopes. "
            "RCCA's memory grows more slowly than its attention term: at C=512 the O(HW C) feature maps "
            "dominate it up to s ~ C/2.",
            "",
        ]
    thr = result.get("throughput") or []
    if thr:
        lines += [
            "### Whole-model CPU throughput (CCNet R-50-D8, R=2)",
            "",
            markdown_table(
                ["input", "inference s/image", "inference images/s", "training step s", "training images/s"],
                [
                    [
                        f"{r['size'][0]}x{r['size'][1]}",
                        f"{r['infer_s']:.2f}",
                        f"{r['infer_images_per_s']:.3f}",
                        f"{r['train_s']:.2f}",
                        f"{r['train_images_per_s']:.3f}",
                    ]
                    for r in thr
                ],
            ),
            "",
            f"Batch 1, fp32, {result['threads']} thread(s), random weights, 19 classes; medians of "
            f"{s['throughput_repetitions']} repetition(s) after a warm-up. For scale: mmsegmentation reports "
            "3.32 images/s (inference) at 512x1024 on a V100 GPU.",
            "",
        ]
    return "\n".join(lines)


def run_bench(
    out_dir: str | os.PathLike, settings: BenchSettings | None = None, *, progress: bool = True
) -> dict[str, Any]:
    """Run the three parts and write ``bench.json``, ``bench.md``, ``scaling.png`` (if matplotlib is
    installed; else a note) and ``report.md`` into ``out_dir``. Returns the JSON content."""
    from tqdm import tqdm

    from ccnet.engine.report import environment, write_report

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


if __name__ == "__main__":  # memory worker: python -m ccnet.engine.bench KIND MODE THREADS B C H W
    kind, mode, threads, *dims = sys.argv[1:]
    torch.set_num_threads(int(threads))
    print(memory_worker(kind, tuple(int(d) for d in dims), mode))
