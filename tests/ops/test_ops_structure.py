"""What importing the ops does (and does not do), and the knobs the oracle tests patch."""

from __future__ import annotations

import subprocess
import sys

import torch

from ccnet.ops import chunks


def test_importing_ccnet_patches_no_torch_state_and_loads_only_the_ops():
    # A fresh process: this one may already have imported ccnet.measure or other ccnet packages.
    code = (
        "import sys, torch, ccnet\n"
        "from torch.utils import flop_counter\n"
        "assert torch.ops.aten.mkldnn_convolution not in flop_counter.flop_registry\n"
        "others = [m for m in sys.modules if m.startswith('ccnet.') and not m.startswith('ccnet.ops')]\n"
        "assert not others, others\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_chunk_budget_is_read_at_call_time(monkeypatch):
    v = torch.empty(2, 4, 6, 5)
    assert chunks.plan(v, 4) == [(0, 0, 6), (1, 0, 6)]
    monkeypatch.setattr("ccnet.ops.chunks.CHUNK_ELEMENTS", 1)
    assert chunks.plan(v, 4) == [(b, row, row + 1) for b in range(2) for row in range(6)]
