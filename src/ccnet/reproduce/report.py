"""The reproduction report: machine / library information and ``report.md`` assembly.

``ccnet demo`` writes ``demo.json`` + ``demo.md``, ``ccnet demo --video`` ``video.json`` + ``video.md`` and
``ccnet bench`` ``bench.json`` + ``bench.md`` into one folder; each then calls :func:`write_report`, which
joins the sections that exist into ``report.md`` (environment, the commands to rerun, then each section with
its tables and PNGs).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ccnet.measure import machine

__all__ = ["environment", "markdown_table", "write_report"]

SECTIONS = (
    ("demo.md", "ccnet demo"),
    ("video.md", "ccnet demo --video"),
    ("bench.md", "ccnet bench"),
    ("instance.md", "python -m ccnet.reproduce.instance_ablation"),
    ("flip_pairs.md", "python -m ccnet.reproduce.flip_pairs --seeds 0 1 2"),
)


def environment() -> dict[str, Any]:
    """The machine (:func:`ccnet.measure.machine`), library versions and date of this run (JSON values)."""
    import numpy

    import ccnet

    try:
        import timm

        timm_version = timm.__version__
    except ImportError:  # pragma: no cover - timm is a dependency
        timm_version = None
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "ccnet": ccnet.__version__,
        "numpy": numpy.__version__,
        "timm": timm_version,
        **machine(),
    }


def markdown_table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A GitHub markdown table; ``align`` one char per column (``l`` or ``r``, default: first l, rest r)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _flags(env: dict[str, Any]) -> str:
    """`` [avx avx2 fma]``: the instruction-set flags, if recorded (reports before them have none)."""
    return f" [{' '.join(env['cpu_flags'])}]" if env.get("cpu_flags") else ""


def _environment_lines(env: dict[str, Any]) -> list[str]:
    return [
        f"- machine: {env.get('cpu')}{_flags(env)} ({env.get('cpu_count')} logical cores, "
        f"{env.get('memory_gb')} GB), "
        f"{env.get('platform')}, CUDA {'available' if env.get('cuda') else 'not used'}",
        f"- libraries: ccnet {env.get('ccnet')}, Python {env.get('python')}, torch {env.get('torch')}, "
        f"numpy {env.get('numpy')}, timm {env.get('timm')}",
        f"- produced: {env.get('date_utc')} UTC",
    ]


def write_report(folder: str | os.PathLike, environment_info: dict[str, Any] | None = None) -> Path:
    """(Re)write ``folder/report.md`` from the section files present (``demo.md``, ``bench.md``)."""
    folder = Path(folder)
    env = environment_info or environment()
    try:
        shown = folder.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        shown = str(folder)
    bench_options = ""
    if (folder / "bench.json").is_file():
        threads = json.loads((folder / "bench.json").read_text()).get("settings", {}).get("threads")
        bench_options = f" --threads {threads}" if threads else ""
    lines = [
        "# ccnet reproduction report",
        "",
        "What the CCNet paper (Huang et al., ICCV 2019 / TPAMI 2020) claims and what this library measures "
        "on a CPU: the recurrence ablation on the built-in context task (`ccnet demo`), temporal context "
        "with 3-D criss-cross attention on the built-in video task (`ccnet demo --video`) and the efficiency "
        "of criss-cross attention against non-local blocks (`ccnet bench`).",
        "",
        "## Environment",
        "",
        *_environment_lines(env),
        "",
        "## Rerun",
        "",
        "```bash",
        f"ccnet demo --out {shown}    # the ablation (~6 min on 2 idle cores; --quick: ~2 min)",
        f"ccnet demo --video --out {shown}    # temporal context, T=1 vs T=5 (~8 min; --quick: ~3 min)",
        f"ccnet bench --out {shown}{bench_options}   # the efficiency report (~10-15 min; --quick: minutes)",
        f"python -m ccnet.reproduce.instance_ablation --out {shown}   # Mask R-CNN + context (~45 min)",
        f"python -m ccnet.reproduce.flip_pairs --seeds 0 1 2 --out {shown}   # flip testing, LIP-like pairs",
        "```",
        "",
        "The commands write into the same folder and regenerate this file from the sections present. "
        "The seeds and settings of each section are listed in it and in `demo.json` / `video.json` / "
        "`bench.json`.",
        "",
    ]
    found = False
    for filename, command in SECTIONS:
        path = folder / filename
        if path.is_file():
            found = True
            lines += [path.read_text().rstrip(), ""]
        else:
            lines += [f"## `{command}`", "", f"(not run yet: `{command} --out {shown}`)", ""]
    if not found:
        raise FileNotFoundError(
            f"{folder}: none of {[name for name, _ in SECTIONS]} to assemble a report from"
        )
    target = folder / "report.md"
    target.write_text("\n".join(lines).rstrip() + "\n")
    return target
