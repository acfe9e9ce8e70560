"""Criss-cross attention benchmark: ccnet's RCCA vs the common formulations and a non-local block.

Four implementations with identical weights, R=2 for the criss-cross ones:

* ``ccnet``    -- :class:`ccnet.RecurrentCrissCrossAttention`;
* ``einsum``   -- the widely used einsum formulation (column energies + a -inf diagonal, row energies,
                  concatenation, joint softmax, two einsum aggregations): the baseline of every ratio;
* ``bmm``      -- the classic bmm formulation with an explicit (B*W, H, H) -inf diagonal tensor;
* ``nonlocal`` -- one non-local block (embedded Gaussian, C/8 query/key, C value, gamma residual).

Measured in ONE run (with :mod:`ccnet.measure`): inference forward time, forward+backward time (medians of
interleaved repetitions), peak memory for forward+backward and for inference (each the median of 3 fresh
subprocesses, 1 with --quick: peak RSS increase over the same process after it built the module, allocated
the input and warmed up), the steady-state training peak (each of 4 forward+backward steps in one process,
measured from the resident size before the step after freed heap pages went back to the OS; the median of
steps 2-4), and forward FLOPs. Writes ``benchmarks/results/attention[-quick].{json,md}``, which
name the machine (CPU model and flags, threads).

    python benchmarks/attention.py            # full run
    python benchmarks/attention.py --quick    # small sizes (smoke run)
"""

from __future__ import annotations

import json
import statistics
import sys

import torch
from _measure import (
    benchmark_arguments,
    forward,
    memory_cases,
    module_workload,
    steady_training_memory,
    time_cases,
)
from torch import nn

import ccnet
from ccnet.measure import Workload, count_flops, describe_machine, machine

IMPLEMENTATIONS = ["ccnet", "einsum", "bmm", "nonlocal"]
BASELINE = "einsum"
FULL_CASES = [(1, 512, 97, 97), (1, 512, 64, 128), (2, 512, 64, 64)]
QUICK_CASES = [(1, 256, 48, 48), (2, 128, 32, 40)]
RECURRENCE = 2

# Targets of the foundation issue, at the first full case, as ratios to the einsum baseline.
TARGETS = {"forward": 0.6, "forward_backward": 0.6, "train_memory": 0.36, "train_steady": 0.3}
NONLOCAL_MEMORY_RATIO = 11.0  # the paper: one non-local block needs ~11x the memory of RCCA R=2
# The memory issue's target on every CPU kind: one non-local block's first full-size step (fresh process)
# >= 12x our steady-state training step.
NONLOCAL_STEADY_RATIO = 12.0
STEADY_STEPS = 4
FLOP_REDUCTION = 0.84  # RCCA R=2 vs one non-local block (paper: ~85%)


# --------------------------------------------------------------------------------------------------------
# baselines, written for this benchmark


class _Projections(nn.Module):
    """query/key (C -> C/8) and value (C -> C) 1x1 convs and gamma, as in every formulation here."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.query_conv = nn.Conv2d(channels, channels // 8, 1)
        self.key_conv = nn.Conv2d(channels, channels // 8, 1)
        self.value_conv = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(()))

    def project(self, x):
        return self.query_conv(x), self.key_conv(x), self.value_conv(x)


class EinsumCrissCross(_Projections):
    def forward(self, x):
        _, _, height, _ = x.shape
        q, k, v = self.project(x)
        diagonal = torch.diag(torch.full((height,), float("-inf"), device=x.device))  # (H, H)
        energy_h = torch.einsum("bchw,bciw->bhwi", q, k) + diagonal[None, :, None, :]  # (B, H, W, H)
        energy_w = torch.einsum("bchw,bchj->bhwj", q, k)  # (B, H, W, W)
        attention = torch.cat([energy_h, energy_w], dim=-1).softmax(dim=-1)  # (B, H, W, H + W)
        att_h, att_w = attention[..., :height], attention[..., height:]
        out = torch.einsum("bhwi,bciw->bchw", att_h, v) + torch.einsum("bhwj,bchj->bchw", att_w, v)
        return self.gamma * out + x


class BmmCrissCross(_Projections):
    def forward(self, x):
        batch, _, height, width = x.shape
        q, k, v = self.project(x)
        # column-major (B*W, ., H) and row-major (B*H, ., W) copies
        q_h = q.permute(0, 3, 1, 2).contiguous().view(batch * width, -1, height).permute(0, 2, 1)
        q_w = q.permute(0, 2, 1, 3).contiguous().view(batch * height, -1, width).permute(0, 2, 1)
        k_h = k.permute(0, 3, 1, 2).contiguous().view(batch * width, -1, height)
        k_w = k.permute(0, 2, 1, 3).contiguous().view(batch * height, -1, width)
        v_h = v.permute(0, 3, 1, 2).contiguous().view(batch * width, -1, height)
        v_w = v.permute(0, 2, 1, 3).contiguous().view(batch * height, -1, width)
        minus_inf_diagonal = torch.diag(torch.full((height,), float("-inf"), device=x.device))
        minus_inf_diagonal = minus_inf_diagonal.unsqueeze(0).repeat(batch * width, 1, 1)  # (B*W, H, H)
        energy_h = (torch.bmm(q_h, k_h) + minus_inf_diagonal).view(batch, width, height, height)
        energy_h = energy_h.permute(0, 2, 1, 3)  # (B, H, W, H)
        energy_w = torch.bmm(q_w, k_w).view(batch, height, width, width)
        attention = torch.cat([energy_h, energy_w], 3).softmax(dim=3)
        att_h = attention[..., :height].permute(0, 2, 1, 3).contiguous().view(batch * width, height, height)
        att_w = attention[..., height:].contiguous().view(batch * height, width, width)
        out_h = torch.bmm(v_h, att_h.permute(0, 2, 1)).view(batch, width, -1, height).permute(0, 2, 3, 1)
        out_w = torch.bmm(v_w, att_w.permute(0, 2, 1)).view(batch, height, -1, width).permute(0, 2, 1, 3)
        return self.gamma * (out_h + out_w) + x


class NonLocal(_Projections):
    """Embedded-Gaussian non-local block: every pixel attends to all H*W pixels."""

    def forward(self, x):
        batch, channels, height, width = x.shape
        q, k, v = self.project(x)
        energy = torch.bmm(q.flatten(2).transpose(1, 2), k.flatten(2))  # (B, HW, HW)
        attention = energy.softmax(dim=-1)
        out = torch.bmm(v.flatten(2), attention.transpose(1, 2)).view(batch, channels, height, width)
        return self.gamma * out + x


class Recurrent(nn.Module):
    def __init__(self, block: nn.Module, recurrence: int) -> None:
        super().__init__()
        self.block, self.recurrence = block, recurrence

    def forward(self, x):
        for _ in range(self.recurrence):
            x = self.block(x)
        return x


def build(name: str, channels: int) -> nn.Module:
    """The implementation ``name`` with the benchmark's shared weights (seeded; gamma != 0)."""
    torch.manual_seed(0)
    ours = ccnet.RecurrentCrissCrossAttention(channels, recurrence=RECURRENCE)
    with torch.no_grad():
        ours.cca.gamma.fill_(0.5)
        for conv in (ours.cca.query_conv, ours.cca.key_conv, ours.cca.value_conv):
            conv.weight.mul_(0.5)
    if name == "ccnet":
        return ours
    block = {"einsum": EinsumCrissCross, "bmm": BmmCrissCross, "nonlocal": NonLocal}[name](channels)
    block.load_state_dict(ours.cca.state_dict())
    return block if name == "nonlocal" else Recurrent(block, RECURRENCE)


# --------------------------------------------------------------------------------------------------------
# measurements


def memory_workload(name: str, shape: list[int], mode: str) -> Workload:
    """What a memory worker measures: one ``mode`` run of ``name`` on ``shape``, warmed up at a quarter of
    the size (see ``_measure.module_workload``)."""
    torch.manual_seed(0)
    small = torch.randn(*shape[:2], *(max(1, s // 4) for s in shape[2:]))
    return module_workload(build(name, shape[1]), torch.randn(shape), small, mode)


# --------------------------------------------------------------------------------------------------------
# report


def check_equal_outputs(shape) -> dict[str, float]:
    """Max |output - ccnet output| of the criss-cross baselines: they must compute the same function."""
    x = torch.randn(shape)
    ours = forward(build("ccnet", shape[1]), x)
    return {name: (forward(build(name, shape[1]), x) - ours).abs().max().item() for name in ("einsum", "bmm")}


def main(argv=None) -> int:
    # 11 repetitions: single samples vary a lot on a shared host; the median of 11 is stable
    args = benchmark_arguments(argv, __doc__, 11, 5)

    cases = QUICK_CASES if args.quick else FULL_CASES
    repetitions = args.repetitions
    print(
        f"criss-cross attention benchmark: cases {cases}, R={RECURRENCE}, {repetitions} repetitions, "
        f"{args.threads} threads",
        flush=True,
    )
    differences = check_equal_outputs(cases[0])
    print("max |baseline - ccnet| output difference:", {k: f"{v:.2e}" for k, v in differences.items()})
    flops = {(s, n): _forward_flops(n, s) for s in cases for n in IMPLEMENTATIONS}
    print("timing ...", flush=True)
    times = time_cases(cases, build, IMPLEMENTATIONS, repetitions)
    memory, steady = {}, {}
    if not args.no_memory:
        print("memory (one subprocess per measurement) ...", flush=True)
        # The allocator's fragmentation varies from process to process: the full run reports a median.
        memory = memory_cases(__file__, cases, IMPLEMENTATIONS, args.threads, 1 if args.quick else 3)
        print("steady-state training memory (one subprocess per case and implementation) ...", flush=True)
        steady = steady_training_memory(__file__, cases, IMPLEMENTATIONS, args.threads, STEADY_STEPS)

    rows = []
    for shape in cases:
        for name in IMPLEMENTATIONS:
            row = {"shape": list(shape), "impl": name, "gflops": flops[(shape, name)] / 1e9}
            for mode in ("forward", "forward_backward"):
                row[f"{mode}_ms"] = 1e3 * times[(shape, name, mode)]
                row[f"{mode}_ratio"] = times[(shape, name, mode)] / times[(shape, BASELINE, mode)]
            for mode, key in (("forward", "infer_memory"), ("forward_backward", "train_memory")):
                if memory:
                    row[f"{key}_mb"] = memory[(shape, name, mode)]
                    row[f"{key}_ratio"] = memory[(shape, name, mode)] / max(
                        memory[(shape, BASELINE, mode)], 1e-9
                    )
            if steady:
                row["train_steady_steps_mb"] = list(steady[(shape, name)])
                row["train_steady_mb"] = statistics.median(steady[(shape, name)][1:])
            rows.append(row)
        if steady:
            baseline = next(r for r in rows if r["shape"] == list(shape) and r["impl"] == BASELINE)
            for row in rows:
                if row["shape"] == list(shape):
                    row["train_steady_ratio"] = row["train_steady_mb"] / max(
                        baseline["train_steady_mb"], 1e-9
                    )
    verdicts = _verdicts(rows, cases[0], bool(memory))
    environment = machine()
    report = _markdown(rows, verdicts, differences, args, repetitions, environment)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "attention-quick" if args.quick else "attention"
    (args.out / f"{stem}.json").write_text(
        json.dumps(
            {
                "environment": environment,
                "repetitions": repetitions,
                "recurrence": RECURRENCE,
                "baseline": BASELINE,
                "output_differences": differences,
                "rows": rows,
                "targets": verdicts,
            },
            indent=2,
        )
    )
    (args.out / f"{stem}.md").write_text(report)
    print(f"wrote {args.out / stem}.json and .md")
    return 0


def _verdicts(rows, shape, with_memory: bool) -> dict:
    ours = next(r for r in rows if r["shape"] == list(shape) and r["impl"] == "ccnet")
    nonlocal_row = next(r for r in rows if r["shape"] == list(shape) and r["impl"] == "nonlocal")
    verdicts = {
        f"{mode} <= {limit}x einsum": {"value": ours.get(f"{mode}_ratio"), "limit": limit}
        for mode, limit in TARGETS.items()
        if f"{mode}_ratio" in ours
    }
    flop_reduction = 1 - ours["gflops"] / nonlocal_row["gflops"]
    verdicts[f"FLOPs reduction vs non-local >= {FLOP_REDUCTION:.0%}"] = {
        "value": flop_reduction,
        "limit": FLOP_REDUCTION,
        "higher_is_better": True,
    }
    if with_memory:
        ratio = nonlocal_row["train_memory_mb"] / max(ours["train_memory_mb"], 1e-9)
        verdicts[f"non-local / ccnet training memory >= {NONLOCAL_MEMORY_RATIO:g}x"] = {
            "value": ratio,
            "limit": NONLOCAL_MEMORY_RATIO,
            "higher_is_better": True,
        }
    if "train_steady_mb" in ours:
        ratio = nonlocal_row["train_memory_mb"] / max(ours["train_steady_mb"], 1e-9)
        verdicts[f"non-local (first step) / ccnet steady training memory >= {NONLOCAL_STEADY_RATIO:g}x"] = {
            "value": ratio,
            "limit": NONLOCAL_STEADY_RATIO,
            "higher_is_better": True,
        }
    for verdict in verdicts.values():
        value, limit = verdict["value"], verdict["limit"]
        verdict["met"] = value >= limit if verdict.get("higher_is_better") else value <= limit
    return verdicts


def _forward_flops(name: str, shape: tuple[int, ...]) -> int:
    module, x = build(name, shape[1]), torch.randn(shape)
    return count_flops(lambda: module(x))


def _markdown(rows, verdicts, differences, args, repetitions, environment) -> str:
    lines = [
        f"# Criss-cross attention benchmark ({'quick' if args.quick else 'full'})",
        "",
        f"{describe_machine(environment)}; R={RECURRENCE} for the "
        f"criss-cross implementations, one block for non-local; medians of {repetitions} interleaved "
        f"repetitions; ratios are to `{BASELINE}` in the same run. Memory: peak RSS increase over a "
        f"warmed-up process holding the module and input (first full-size step of a fresh process); steady: "
        f"median peak increase of steps 2-{STEADY_STEPS} of a training loop in one process. Max output "
        "difference to ccnet: " + ", ".join(f"{k} {v:.1e}" for k, v in differences.items()),
        "",
        "| shape (B,C,H,W) | impl | GFLOPs fwd | fwd ms | ratio | fwd+bwd ms | ratio | train MB | ratio "
        "| steady train MB (steps) | ratio | infer MB | ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        mem = [
            f"{r[k + '_mb']:.0f} | {r[k + '_ratio']:.2f}" if k + "_mb" in r else "- | -"
            for k in ("train_memory", "infer_memory")
        ]
        steps = "/".join(f"{v:.0f}" for v in r.get("train_steady_steps_mb", []))
        mem.insert(
            1, f"{r['train_steady_mb']:.0f} ({steps}) | {r['train_steady_ratio']:.2f}" if steps else "- | -"
        )
        lines.append(
            f"| {tuple(r['shape'])} | {r['impl']} | {r['gflops']:.2f} | {r['forward_ms']:.1f} | "
            f"{r['forward_ratio']:.2f} | {r['forward_backward_ms']:.1f} | "
            f"{r['forward_backward_ratio']:.2f} | {mem[0]} | {mem[1]} | {mem[2]} |"
        )
    lines += ["", "Targets (first shape):", ""]
    for name, v in verdicts.items():
        lines.append(f"- {name}: {v['value']:.3f} -> {'met' if v['met'] else 'NOT met'}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
