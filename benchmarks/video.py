"""3-D criss-cross attention over clips: time and memory per clip as the clip grows, vs a naive non-local.

For clips of T frames of (C, H, W) features (default: C=512 at 45x60, a 360x480 CamVid frame at output
stride 8), in ONE run:

* ``rcca3d``   -- :class:`ccnet.RecurrentCrissCrossAttention3d`, R=2: each position attends to the
                  T + H + W - 2 positions of its time line, row and column;
* ``nonlocal`` -- one naive non-local block over the whole clip (embedded Gaussian, C/8 query/key, C value,
                  gamma residual): each position attends to all T*H*W positions, a (THW)^2 attention matrix.

Reported per T (with :mod:`ccnet.measure`): forward and forward+backward time (medians of interleaved
repetitions), peak memory of inference and of forward+backward (each in fresh subprocesses, as in
``attention.py``) and forward FLOPs. Writes ``benchmarks/results/video[-quick].{json,md}``, which name the
machine (CPU model and flags, threads). The non-local's (THW)^2 attention matrix needs several GB of memory
at the largest T of the full run.

    python benchmarks/video.py            # full run
    python benchmarks/video.py --quick    # small sizes (smoke run)
"""

from __future__ import annotations

import json
import sys

import torch
from _measure import benchmark_arguments, memory_cases, module_workload, time_cases
from torch import nn

import ccnet
from ccnet.measure import Workload, count_flops, describe_machine, machine

IMPLEMENTATIONS = ["rcca3d", "nonlocal"]
RECURRENCE = 2
FULL = {"channels": 512, "size": (45, 60), "frames": (1, 2, 3, 5, 8)}
QUICK = {"channels": 64, "size": (16, 20), "frames": (1, 2, 4)}


class NonLocalClip(nn.Module):
    """Embedded-Gaussian non-local block over all T*H*W positions of a clip (B, C, T, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.query_conv = nn.Conv3d(channels, channels // 8, 1)
        self.key_conv = nn.Conv3d(channels, channels // 8, 1)
        self.value_conv = nn.Conv3d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        q, k, v = self.query_conv(x).flatten(2), self.key_conv(x).flatten(2), self.value_conv(x).flatten(2)
        attention = torch.bmm(q.transpose(1, 2), k).softmax(dim=-1)  # (B, THW, THW)
        out = torch.bmm(v, attention.transpose(1, 2)).view_as(x)
        return self.gamma * out + x


def build(name: str, channels: int) -> nn.Module:
    """``name`` with shared, seeded weights and gamma != 0."""
    torch.manual_seed(0)
    ours = ccnet.RecurrentCrissCrossAttention3d(channels, recurrence=RECURRENCE)
    with torch.no_grad():
        ours.cca.gamma.fill_(0.5)
    if name == "rcca3d":
        return ours
    block = NonLocalClip(channels)
    block.load_state_dict(ours.cca.state_dict())
    return block


def memory_workload(name: str, shape: list[int], mode: str) -> Workload:
    """What a memory worker measures: one ``mode`` run of ``name`` on the clip ``shape`` (B, C, T, H, W),
    warmed up on all T frames at a quarter of H and W (see ``_measure.module_workload``)."""
    small = torch.randn(*shape[:3], *(max(1, s // 4) for s in shape[3:]))
    return module_workload(build(name, shape[1]), torch.randn(shape), small, mode)


def _forward_flops(name: str, shape: tuple[int, ...]) -> int:
    module, x = build(name, shape[1]), torch.randn(shape)
    return count_flops(lambda: module(x))


def main(argv=None) -> int:
    args = benchmark_arguments(argv, __doc__, 5, 3)

    setup = QUICK if args.quick else FULL
    shapes = [(1, setup["channels"], t, *setup["size"]) for t in setup["frames"]]
    repetitions = args.repetitions
    print(f"3-D criss-cross vs clip non-local: shapes {shapes}, {repetitions} repetitions", flush=True)
    flops = {(s, n): _forward_flops(n, s) for s in shapes for n in IMPLEMENTATIONS}
    times = time_cases(shapes, build, IMPLEMENTATIONS, repetitions)
    runs = 1 if args.quick else 3
    memory = {} if args.no_memory else memory_cases(__file__, shapes, IMPLEMENTATIONS, args.threads, runs)

    rows = []
    for shape in shapes:
        for name in IMPLEMENTATIONS:
            row = {
                "shape": list(shape),
                "frames": shape[2],
                "impl": name,
                "gflops": flops[(shape, name)] / 1e9,
            }
            row.update(
                {f"{mode}_ms": 1e3 * times[(shape, name, mode)] for mode in ("forward", "forward_backward")}
            )
            if memory:
                row["infer_memory_mb"] = memory[(shape, name, "forward")]
                row["train_memory_mb"] = memory[(shape, name, "forward_backward")]
            rows.append(row)
    environment = machine()
    report = _markdown(rows, setup, args, repetitions, environment)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "video-quick" if args.quick else "video"
    payload = {"environment": environment, "repetitions": repetitions, "recurrence": RECURRENCE, "rows": rows}
    (args.out / f"{stem}.json").write_text(json.dumps(payload, indent=2))
    (args.out / f"{stem}.md").write_text(report)
    print(f"wrote {args.out / stem}.json and .md")
    return 0


def _markdown(rows, setup, args, repetitions, environment) -> str:
    channels, (height, width) = setup["channels"], setup["size"]
    lines = [
        f"# 3-D criss-cross attention vs a clip non-local ({'quick' if args.quick else 'full'})",
        "",
        f"Clips of T frames of ({channels}, {height}, {width}) features, batch 1; "
        f"{describe_machine(environment)}. `rcca3d`: R={RECURRENCE}, T+H+W-2 positions per query; "
        f"`nonlocal`: one block over all T*H*W positions. Medians of {repetitions} interleaved repetitions; "
        "memory: peak RSS increase over a warmed-up process (fresh subprocess each).",
        "",
        "| T | impl | GFLOPs fwd | fwd ms | fwd+bwd ms | train MB | infer MB | non-local / rcca3d: time "
        "(fwd+bwd), train memory |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    by_key = {(r["frames"], r["impl"]): r for r in rows}
    for r in rows:
        mem = (
            f"{r['train_memory_mb']:.0f} | {r['infer_memory_mb']:.0f}" if "train_memory_mb" in r else "- | -"
        )
        ratio = ""
        if r["impl"] == "nonlocal":
            ours = by_key[(r["frames"], "rcca3d")]
            ratio = f"{r['forward_backward_ms'] / ours['forward_backward_ms']:.1f}x"
            if "train_memory_mb" in r:
                ratio += f", {r['train_memory_mb'] / max(ours['train_memory_mb'], 1e-9):.1f}x"
        lines.append(
            f"| {r['frames']} | {r['impl']} | {r['gflops']:.2f} | {r['forward_ms']:.1f} | "
            f"{r['forward_backward_ms']:.1f} | {mem} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
