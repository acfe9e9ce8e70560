"""Whole-model CPU benchmark: CCNet R-50-D8 inference and training, plain eager fp32 vs each optimisation.

Measured in ONE run (random weights, seeded; BatchNorm statistics calibrated on random images so that
activations have realistic scales; attention gamma = 0.5):

* inference at 1x3x512x1024 and 1x3x769x769 for the variants in ``INFERENCE_VARIANTS``: ``plain`` (eager
  fp32 under ``no_grad``, the baseline of every ratio), ``inference_mode``, ``fold_bn``, ``channels_last``,
  ``fast_fp32`` (inference_mode + folded BN + channels-last), ``compile`` (fast_fp32 + ``torch.compile``,
  with ``--compile`` only: inductor compilation takes minutes here), ``bf16`` (fast_fp32 + bf16 autocast) and
  ``onnxruntime`` (the ``ccnet export`` ONNX file, CPU provider, same thread count);
* a training step (forward, CE loss on ``out`` + 0.4 x ``aux``, backward, SGD) at 2x3x512x512 for
  ``TRAIN_VARIANTS``: ``plain``, ``channels_last``, ``bf16`` (autocast + channels-last);
* for each inference variant its accuracy against ``plain``: max |logit difference| and argmax agreement;
* time: median of ``--repetitions`` (default 5) interleaved repetitions after one warm-up; images/s;
* memory: peak RSS of a fresh subprocess per (variant, case) (``--no-memory`` skips it): ``peak MB`` is the
  process's high-water mark, ``+MB`` the increase of the peak during one run over the warmed-up process
  (:func:`ccnet.measure.peak_memory`, the same method as ``benchmarks/attention.py``).

Writes ``benchmarks/results/model[-quick].{json,md}``, which name the machine (CPU model and flags, threads).

    python benchmarks/model.py              # full run (the slowest benchmark)
    python benchmarks/model.py --quick      # ccnet_tiny at small sizes (smoke run)
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import ccnet
from ccnet.deploy.export import LogitsOnly, compare_outputs, export_onnx, onnxruntime_session
from ccnet.deploy.fast import cpu_supports_bf16, optimize_for_inference
from ccnet.measure import (
    Workload,
    describe_machine,
    machine,
    peak_memory,
    peak_memory_supported,
    time_interleaved,
)

RESULTS = Path(__file__).resolve().parent / "results"
NUM_CLASSES = 19
BASELINE = "plain"

FULL = {
    "model": "ccnet_r50_d8",
    "inference": [(1, 3, 512, 1024), (1, 3, 769, 769)],
    "train": [(2, 3, 512, 512)],
    "repetitions": 5,
}
QUICK = {
    "model": "ccnet_tiny",
    "inference": [(1, 3, 64, 128), (1, 3, 77, 77)],
    "train": [(2, 3, 64, 64)],
    "repetitions": 2,
}

# name -> options; "kind" torch (optimize_for_inference options + inference_mode) or onnxruntime
INFERENCE_VARIANTS: dict[str, dict] = {
    "plain": {"raw": True},
    "inference_mode": {"raw": True, "inference_mode": True},
    "fold_bn": {"fold_bn": True, "channels_last": False},
    "channels_last": {"fold_bn": False, "channels_last": True},
    "fast_fp32": {"fold_bn": True, "channels_last": True},
    "compile": {"fold_bn": True, "channels_last": True, "compile": True},
    "bf16": {"fold_bn": True, "channels_last": True, "bf16": True},
    "onnxruntime": {"onnxruntime": True},
}
FP32_VARIANTS = ("inference_mode", "fold_bn", "channels_last", "fast_fp32", "compile", "onnxruntime")
TRAIN_VARIANTS: dict[str, dict] = {
    "plain": {},
    "channels_last": {"channels_last": True},
    "bf16": {"channels_last": True, "bf16": True},
}
TARGETS = {"best_fp32_speedup": 1.3, "bf16_speedup": 2.0}


# --------------------------------------------------------------------------------------------------------
# models


def build_model(name: str) -> nn.Module:
    """The benchmark's network: seeded random weights, calibrated BatchNorm statistics, gamma 0.5; eval."""
    torch.manual_seed(0)
    model = ccnet.create_model(name, num_classes=NUM_CLASSES)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "gamma"):
                module.gamma.fill_(0.5)
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = None  # cumulative average: one pass sets the batch statistics
        model.train()
        model(torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(1)))
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = 0.1
    return model.eval()


class InferenceRunner:
    """One inference variant: ``run(x)`` -> logits (B, K, H, W) float32."""

    def __init__(self, name: str, model: nn.Module, onnx_path: Path | None, threads: int) -> None:
        options = dict(INFERENCE_VARIANTS[name])
        self.name = name
        self.session = None
        self.context = torch.inference_mode if options.pop("inference_mode", True) else torch.no_grad
        if options.pop("onnxruntime", False):
            self.session = onnxruntime_session(onnx_path, threads=threads)
            self.input_name = self.session.get_inputs()[0].name
        elif options.pop("raw", False):
            self.module = LogitsOnly(model)
        else:
            self.module = LogitsOnly(optimize_for_inference(model, **options))

    def run(self, x: torch.Tensor) -> torch.Tensor:
        if self.session is not None:
            (logits,) = self.session.run(None, {self.input_name: x.numpy()})
            return torch.from_numpy(logits)
        with self.context():
            return self.module(x)


class TrainRunner:
    """One training variant: ``run(x, target)`` = forward, loss, backward, SGD step on its own model copy."""

    def __init__(self, name: str, model: nn.Module) -> None:
        options = TRAIN_VARIANTS[name]
        self.channels_last = options.get("channels_last", False)
        self.bf16 = options.get("bf16", False)
        self.model = copy.deepcopy(model).train()
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)

    def run(self, x: torch.Tensor, target: torch.Tensor) -> None:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        context = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else nullcontext()
        with context:
            out, aux = self.model(x)
            loss = F.cross_entropy(out.float(), target) + 0.4 * F.cross_entropy(aux.float(), target)
        loss.backward()
        self.optimizer.step()


def _inputs(shape) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(shape, generator=generator)
    target = torch.randint(0, NUM_CLASSES, (shape[0], *shape[2:]), generator=generator)
    return x, target


# --------------------------------------------------------------------------------------------------------
# measurements


def time_inference(model, variants, cases, repetitions, onnx_path, threads) -> tuple[dict, dict]:
    """(median seconds per (case, variant), accuracy vs plain per (case, variant)); interleaved."""
    runners = {name: InferenceRunner(name, model, onnx_path, threads) for name in variants}
    times, accuracy = {}, {}
    for shape in cases:
        x, _ = _inputs(shape)
        outputs = {}
        for name, runner in runners.items():  # warm-up (compiles), and the outputs compared
            start = time.perf_counter()
            outputs[name] = runner.run(x).float()
            print(f"  warm-up {shape} {name}: {time.perf_counter() - start:.2f} s", flush=True)
        for name in runners:
            parity = compare_outputs(outputs[BASELINE], outputs[name], shape)
            accuracy[(shape, name)] = {
                "max_abs_diff": parity.max_abs_diff,
                "argmax_agreement": parity.argmax_agreement,
            }
        functions = {name: (lambda r=runner, x=x: r.run(x)) for name, runner in runners.items()}
        for name, seconds in time_interleaved(functions, repetitions, warmup=0).items():
            times[(shape, name)] = seconds
        print(f"  {shape}: " + ", ".join(f"{n} {times[(shape, n)]:.3f} s" for n in runners), flush=True)
    return times, accuracy


def time_training(model, variants, cases, repetitions) -> dict:
    """Median seconds of one training step per (case, variant); interleaved."""
    times = {}
    for shape in cases:
        x, target = _inputs(shape)
        runners = {name: TrainRunner(name, model) for name in variants}
        functions = {name: (lambda r=runner, x=x, t=target: r.run(x, t)) for name, runner in runners.items()}
        for name, seconds in time_interleaved(functions, repetitions).items():
            times[(shape, name)] = seconds
        print(f"  train {shape}: " + ", ".join(f"{n} {times[(shape, n)]:.3f} s" for n in runners), flush=True)
    return times


def memory_workload(
    model_name: str, phase: str, variant: str, shape: list[int], onnx_path: str | None, threads: int
) -> Workload:
    """What a memory worker measures: one inference or training step of ``variant`` on ``shape``; the
    warm-up is one step at the same size (kernels, libraries, compilation, optimizer state)."""
    model = build_model(model_name)
    x, target = _inputs(shape)
    if phase == "inference":
        runner = InferenceRunner(variant, model, None if onnx_path is None else Path(onnx_path), threads)
        return Workload(run=lambda: runner.run(x))
    train_runner = TrainRunner(variant, model)
    return Workload(run=lambda: train_runner.run(x, target))


def measure_memory(model_name, jobs, onnx_path, threads) -> dict:
    """(phase, case, variant) -> {"peak_mb", "increase_mb"}: one fresh subprocess each."""
    if not peak_memory_supported():
        raise SystemExit("memory measurement needs Linux /proc/self/clear_refs; run with --no-memory")
    workload = f"{Path(__file__).resolve()}:memory_workload"
    results = {}
    for phase, shape, variant in jobs:
        arguments = {
            "model_name": model_name,
            "phase": phase,
            "variant": variant,
            "shape": list(shape),
            "onnx_path": None if onnx_path is None else str(onnx_path),
            "threads": threads,
        }
        measured = peak_memory(workload, arguments, threads=threads)
        results[(phase, shape, variant)] = {"peak_mb": measured.peak_mb, "increase_mb": measured.increase_mb}
        peak, increase = measured.peak_mb, measured.increase_mb
        print(f"  memory {phase} {shape} {variant}: {peak:.1f} MB peak, +{increase:.1f} MB", flush=True)
    return results


# --------------------------------------------------------------------------------------------------------
# report


def _rows(times, accuracy, train_times, memory, inference_cases, train_cases, variants, train_variants):
    rows = []
    for shape in inference_cases:
        for name in variants:
            seconds = times[(shape, name)]
            row = {
                "phase": "inference",
                "shape": list(shape),
                "variant": name,
                "seconds": seconds,
                "images_per_s": shape[0] / seconds,
                "speedup": times[(shape, BASELINE)] / seconds,
                **accuracy[(shape, name)],
            }
            row.update(memory.get(("inference", shape, name), {}))
            rows.append(row)
    for shape in train_cases:
        for name in train_variants:
            seconds = train_times[(shape, name)]
            row = {
                "phase": "train",
                "shape": list(shape),
                "variant": name,
                "seconds": seconds,
                "images_per_s": shape[0] / seconds,
                "speedup": train_times[(shape, BASELINE)] / seconds,
            }
            row.update(memory.get(("train", shape, name), {}))
            rows.append(row)
    return rows


def _verdicts(rows) -> dict:
    """Targets at every inference case: best fp32 and bf16 speed-ups. (The bf16 argmax agreement target is
    for a trained model: ``benchmarks/precision.py``; with random weights the agreement here is a worst case.)
    """
    verdicts = {}
    inference = [r for r in rows if r["phase"] == "inference"]
    for shape in sorted({tuple(r["shape"]) for r in inference}):
        case = {r["variant"]: r for r in inference if tuple(r["shape"]) == shape}
        fp32 = [case[n] for n in FP32_VARIANTS if n in case]
        best = max(fp32, key=lambda r: r["speedup"])
        label = "x".join(map(str, shape))
        verdicts[f"{label}: best fp32 ({best['variant']}) >= {TARGETS['best_fp32_speedup']}x plain"] = {
            "value": best["speedup"],
            "limit": TARGETS["best_fp32_speedup"],
        }
        if "bf16" in case:
            verdicts[f"{label}: bf16 >= {TARGETS['bf16_speedup']}x plain"] = {
                "value": case["bf16"]["speedup"],
                "limit": TARGETS["bf16_speedup"],
            }
    for verdict in verdicts.values():
        verdict["met"] = verdict["value"] >= verdict["limit"]
    return verdicts


def _markdown(rows, verdicts, quick: bool, settings, environment) -> str:
    lines = [
        f"# CCNet whole-model benchmark ({'quick' if quick else 'full'})",
        "",
        f"`{settings['model']}`, {NUM_CLASSES} classes, random weights (seeded, BatchNorm calibrated), "
        f"{describe_machine(environment)}, onnxruntime {environment['onnxruntime']} "
        f"(bf16 kernels: {environment['bf16_supported']}). Medians of "
        f"{settings['repetitions']} interleaved repetitions after a warm-up; speed-up = plain time / time "
        f"in the same run. Accuracy vs `plain` on the same input. Memory: fresh subprocess per row, "
        f"peak RSS of the process and peak increase during one run after a warm-up run.",
        "",
        "| phase | input | variant | s / batch | images/s | speed-up | max abs logit diff | argmax agree "
        "| peak MB | +MB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        accuracy = (
            f"{r['max_abs_diff']:.2e} | {100 * r['argmax_agreement']:.3f}%"
            if "max_abs_diff" in r
            else "- | -"
        )
        memory = f"{r['peak_mb']:.0f} | {r['increase_mb']:.0f}" if "peak_mb" in r else "- | -"
        lines.append(
            f"| {r['phase']} | {'x'.join(map(str, r['shape']))} | {r['variant']} | {r['seconds']:.3f} | "
            f"{r['images_per_s']:.3f} | {r['speedup']:.2f} | {accuracy} | {memory} |"
        )
    lines += ["", "Targets:", ""]
    for name, verdict in verdicts.items():
        lines.append(f"- {name}: {verdict['value']:.2f}x -> {'met' if verdict['met'] else 'NOT met'}")
    lines += [
        "",
        "Argmax agreement here is that of random weights, whose class logits are nearly tied at most pixels: "
        "a worst case. The bf16 agreement target (>= 99.9%) is for a trained model, measured on a dataset "
        "split by `benchmarks/precision.py` (`precision.md`).",
    ]
    if not environment["bf16_supported"]:
        lines.append(
            "This CPU has no native bf16 kernels: the bf16 rows are emulated, not a bf16 speed result."
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="ccnet_tiny at small sizes, 2 repetitions")
    parser.add_argument("--repetitions", type=int, default=None, help="timed repetitions (default 5)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--compile", action="store_true", help="include the torch.compile variant (slow)")
    parser.add_argument("--no-memory", action="store_true", help="skip the subprocess memory measurements")
    parser.add_argument("--no-train", action="store_true", help="skip the training step")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="rewrite the .md (and targets) of a results file; no runs"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.render:
        render(args.render)
        return 0

    settings = dict(QUICK if args.quick else FULL)
    settings["repetitions"] = args.repetitions or settings["repetitions"]
    variants = [n for n in INFERENCE_VARIANTS if args.compile or n != "compile"]
    train_variants = [] if args.no_train else list(TRAIN_VARIANTS)
    train_cases = [] if args.no_train else settings["train"]
    environment = {
        **machine(),
        "onnxruntime": __import__("onnxruntime").__version__,
        "bf16_supported": cpu_supports_bf16(),
    }
    print(f"model benchmark: {settings}, variants {variants}, train {train_variants}", flush=True)
    model = build_model(settings["model"])
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        start = time.perf_counter()
        export_onnx(model, onnx_path)
        print(f"exported ONNX in {time.perf_counter() - start:.1f} s", flush=True)
        print("timing inference ...", flush=True)
        times, accuracy = time_inference(
            model, variants, settings["inference"], settings["repetitions"], onnx_path, args.threads
        )
        train_times = {}
        if train_variants:
            print("timing training ...", flush=True)
            train_times = time_training(model, train_variants, train_cases, settings["repetitions"])
        memory = {}
        if not args.no_memory:
            print("memory (one subprocess per row) ...", flush=True)
            jobs = [("inference", s, n) for s in settings["inference"] for n in variants]
            jobs += [("train", s, n) for s in train_cases for n in train_variants]
            memory = measure_memory(settings["model"], jobs, onnx_path, args.threads)

    rows = _rows(
        times, accuracy, train_times, memory, settings["inference"], train_cases, variants, train_variants
    )
    verdicts = _verdicts(rows)
    report = _markdown(rows, verdicts, args.quick, settings, environment)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "model-quick" if args.quick else "model"
    payload = {
        "environment": environment,
        "settings": {k: v for k, v in settings.items()},
        "baseline": BASELINE,
        "rows": rows,
        "targets": verdicts,
    }
    (args.out / f"{stem}.json").write_text(json.dumps(payload, indent=2))
    (args.out / f"{stem}.md").write_text(report)
    print(f"wrote {args.out / stem}.json and .md")
    return 0


def render(path: Path) -> None:
    """Re-derive the targets and the markdown report of a results JSON (e.g. after a report change)."""
    payload = json.loads(path.read_text())
    payload["targets"] = _verdicts(payload["rows"])
    quick = path.stem.endswith("-quick")
    path.write_text(json.dumps(payload, indent=2))
    path.with_suffix(".md").write_text(
        _markdown(payload["rows"], payload["targets"], quick, payload["settings"], payload["environment"])
    )
    print(f"rewrote {path} and {path.with_suffix('.md')}")


if __name__ == "__main__":
    sys.exit(main())
