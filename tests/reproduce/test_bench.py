"""``ccnet bench``: a small efficiency report end to end, the memory worker and the scaling plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import ccnet.cli
from ccnet.reproduce.bench import (
    BenchSettings,
    build_context,
    context_flops,
    measure_peak_memory,
    run_bench,
)
from ccnet.reproduce.bench_report import scaling_plot

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def commands(monkeypatch):
    registered = dict(ccnet.cli.COMMANDS)
    registered.setdefault("bench", ("ccnet.cli.bench", "efficiency report"))
    monkeypatch.setattr(ccnet.cli, "COMMANDS", registered)


def test_context_modules_and_flops():
    x = torch.randn(1, 32, 6, 6)
    for kind in ("rcca_r1", "rcca_r2", "nonlocal_x1", "nonlocal_x2"):
        assert build_context(kind, 32)(x).shape == x.shape
    shape = (1, 32, 6, 6)
    assert context_flops("rcca_r2", shape) == 2 * context_flops("rcca_r1", shape)
    assert context_flops("nonlocal_x2", shape) == 2 * context_flops("nonlocal_x1", shape)
    with pytest.raises(ValueError, match="unknown context kind"):
        build_context("aspp", 32)


def test_small_bench_end_to_end(tmp_path):
    settings = BenchSettings(
        input_size=(129, 129),
        repetitions=1,
        memory=False,
        scaling_sizes=(8, 16),
        scaling_channels=16,
        scaling_repetitions=1,
        throughput_sizes=((65, 65),),
        throughput_repetitions=1,
        threads=1,
    )
    result = run_bench(tmp_path, settings, progress=False)
    table = result["efficiency"]
    assert table["feature_shape"] == [1, 512, 17, 17]
    assert [r["key"] for r in table["rows"]] == ["fcn", "rcca_r1", "rcca_r2", "nonlocal_x1", "nonlocal_x2"]
    rows = {r["key"]: r for r in table["rows"]}
    assert rows["rcca_r2"]["delta_gflops"] == pytest.approx(2 * rows["rcca_r1"]["delta_gflops"])
    assert rows["rcca_r2"]["gflops"] == pytest.approx(rows["fcn"]["gflops"] + rows["rcca_r2"]["delta_gflops"])
    assert table["flop_reduction"] < 1 and "memory_ratio" not in table  # RCCA costs more at tiny maps
    assert len(result["scaling"]) == 4 and result["throughput"][0]["infer_images_per_s"] > 0
    markdown = (tmp_path / "bench.md").read_text()
    for label in ("FCN twin (no context)", "RCCA R=1", "RCCA R=2", "non-local x1", "non-local x2"):
        assert f"| {label} |" in markdown
    assert "129x129 input, 17x17x512 features" in markdown and "images/s" in markdown
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert (
        saved["settings"]["input_size"] == [129, 129] and saved["environment"]["torch"] == torch.__version__
    )
    report = (tmp_path / "report.md").read_text()
    assert "## `ccnet bench`: efficiency (quick)" in report and "(not run yet: `ccnet demo" in report
    if result["plot"]:
        assert "![scaling](scaling.png)" in report and (tmp_path / "scaling.png").read_bytes()[:8] == PNG
    else:
        assert "matplotlib" in result["plot_error"]


def test_scaling_plot_with_fixed_numbers(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [
        {
            "kind": kind,
            "side": s,
            "pixels": s * s,
            "forward_ms": s**p / 1e3,
            "infer_mb": s**p / 1e4,
            "channels": 8,
        }
        for kind, p in (("rcca_r2", 3), ("nonlocal_x1", 4))
        for s in (16, 32, 64)
    ]
    path = scaling_plot(rows, tmp_path / "scaling.png")
    data = Path(path).read_bytes()
    assert data[:8] == PNG and len(data) < 300_000


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc/self/clear_refs")
def test_peak_memory_in_a_fresh_process():
    peak = measure_peak_memory("nonlocal_x1", (1, 16, 48, 48), "train", runs=1)
    assert 20 < peak < 1000  # the (2304 x 2304) attention matrix alone is 20 MB


def test_bench_cli_quick(tmp_path, commands, capsys):
    out = tmp_path / "bench"
    argv = ["bench", "--quick", "--no-memory", "--no-throughput", "--threads", "1", "--no-progress"]
    assert ccnet.cli.main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "257x257 input, 33x33x512 features" in printed and "| non-local x2 |" in printed
    assert (out / "report.md").is_file() and (out / "bench.json").is_file()
