"""``ccnet bench``: the efficiency report (the paper's FLOPs / memory table at 769x769, a scaling plot of
RCCA vs non-local, whole-model CPU throughput of CCNet R-50-D8), written with ``report.md`` into ``--out``.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="ccnet-report", help="output folder (default: ./ccnet-report)")
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the peak-memory measurements (subprocesses, Linux)"
    )
    parser.add_argument(
        "--no-throughput", action="store_true", help="skip the whole-model R-50 throughput (slowest part)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from ccnet.reproduce.bench import BenchSettings, run_bench

    settings = BenchSettings.quick() if args.quick else BenchSettings()
    changes: dict = {"threads": args.threads, "memory": not args.no_memory}
    if args.no_throughput:
        changes["throughput_sizes"] = ()
    settings = dataclasses.replace(settings, **changes)
    h, w = settings.input_size
    print(f"ccnet bench: efficiency table at {h}x{w}, scaling, throughput -> {args.out}", flush=True)
    result = run_bench(args.out, settings, progress=not args.no_progress)
    print((Path(args.out) / "bench.md").read_text())
    if result["plot_error"]:
        print(f"ccnet bench: no scaling plot: {result['plot_error']}")
    print(
        f"wrote {args.out}/report.md (+ bench.json, bench.md, scaling.png) in "
        f"{result['seconds'] / 60:.1f} min"
    )
    return 0
