"""``ccnet demo``: the recurrence ablation on the built-in context task (CPU), with pictures and a report.

Trains the tiny network with no context module, a non-local block, RCCA R=1, RCCA R=2 and RCCA R=2 + the
category consistent loss (paper weights and 1/100 of them; same data, seeds and budget), prints mIoU
mean +- std per variant and whether the paper's ordering holds, and writes ``demo.json``, ``demo.md``,
``predictions.png``, ``attention.png`` and ``report.md`` into ``--out``.

``--video``: the temporal-context comparison instead: a 2-D run per seed, then the tiny 3-D CCNet from its
weights with attention windows of 1 and 5 frames (and R=2 / R=3) on the built-in video task
(``video.json``, ``video.md``, ``video_predictions.png``). ``--iters`` sets the video stage's iterations.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="ccnet-report", help="output folder (default: ./ccnet-report)")
    parser.add_argument(
        "--video",
        action="store_true",
        help="temporal context on the video task (T=1 vs T=5) instead of the ablation",
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 seed x 750 iterations (a few minutes) instead of 3 x 1500"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default 0 1 2)")
    parser.add_argument("--iters", type=int, default=None, help="training iterations per run (default 1500)")
    parser.add_argument(
        "--workers", type=int, default=2, help="parallel training processes, 1 thread each (0: in-process)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ccnet.reproduce.demo import DemoSettings, run_demo
    from ccnet.reproduce.demo_report import results_markdown

    if args.video:
        return _run_video(args)
    settings = DemoSettings.quick() if args.quick else DemoSettings()
    changes = _changes(args)
    if changes is None:
        return 2
    settings = dataclasses.replace(settings, **changes)
    runs = len(settings.seeds) * len(settings.variants)
    print(
        f"ccnet demo: {runs} training runs ({len(settings.variants)} variants x seeds "
        f"{list(settings.seeds)}, "
        f"{settings.max_iters} iterations each, {settings.workers} in parallel) -> {args.out}",
        flush=True,
    )
    result = run_demo(args.out, settings, progress=not args.no_progress)
    print()
    print(results_markdown(result["summary"], result["checks"]))
    print(
        f"\nwrote {args.out}/report.md (+ demo.json, demo.md, predictions.png, attention.png) in "
        f"{result['seconds'] / 60:.1f} min"
    )
    return 0


def _changes(args: argparse.Namespace) -> dict | None:
    """Settings changed by the options; None (after printing why) for invalid values."""
    changes: dict = {"workers": args.workers}
    if args.seeds:
        changes["seeds"] = tuple(args.seeds)
    if args.iters:
        if args.iters < 1:
            print("ccnet demo: error: --iters must be >= 1")
            return None
        changes["max_iters"] = args.iters
    return changes


def _run_video(args: argparse.Namespace) -> int:
    import dataclasses

    from ccnet.reproduce.video_demo import VideoDemoSettings, run_video_demo, video_markdown

    changes = _changes(args)
    if changes is None:
        return 2
    settings = dataclasses.replace(
        VideoDemoSettings.quick() if args.quick else VideoDemoSettings(), **changes
    )
    variants = ", ".join(f"T={t} R={r}" for t, r in settings.variants)
    print(
        f"ccnet demo --video: per seed {list(settings.seeds)} a 2-D run ({settings.pretrain_iters} "
        f"iterations), then from its weights {variants} ({settings.max_iters} iterations each), "
        f"{settings.workers} in parallel -> {args.out}",
        flush=True,
    )
    result = run_video_demo(args.out, settings, progress=not args.no_progress)
    print()
    print(video_markdown(result))
    print(
        f"wrote {args.out}/report.md (+ video.json, video.md, video_predictions.png) in "
        f"{result['seconds'] / 60:.1f} min"
    )
    return 0
