"""Data parallel training on CPU (gloo): two ``torchrun`` processes keep identical weights and match a single
process trained on the same global batch; the CPU SyncBatchNorm equals BatchNorm on the whole batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from ccnet.engine.dist import CPUSyncBatchNorm, convert_sync_batchnorm
from ccnet.engine.train import train

from .conftest import tiny_config, tiny_overrides

WORKER = Path(__file__).with_name("ddp_worker.py")
# SGD (not AdamW, which divides by tiny second moments and magnifies float noise), no dropout (its random
# masks differ between a 1- and a 2-process run), and a batch of 8 = 2 processes x 4.
EXTRA = (
    "train.max_iters=6",
    "train.batch_size=8",
    "optim.name=sgd",
    "optim.lr=0.02",
    "model.dropout=0.0",
    "data.val_options.length=16",
)


@pytest.mark.slow
def test_two_torchrun_processes_match_each_other_and_a_single_process(tmp_path):
    out = tmp_path / "ddp"
    out.mkdir()
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--standalone",
        str(WORKER), str(out), *tiny_overrides(tmp_path / "ddp_run", *EXTRA),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]

    for key, value in ranks[0]["state"].items():  # identical on both ranks, bit for bit
        assert torch.equal(value, ranks[1]["state"][key]), key
    assert ranks[0]["miou"] == ranks[1]["miou"]  # the confusion matrix is summed across ranks

    single = train(tiny_config(tmp_path / "single", *EXTRA))
    single_state = single.model.state_dict()
    assert single_state.keys() == ranks[0]["state"].keys()
    for key, value in single_state.items():
        if value.is_floating_point():
            torch.testing.assert_close(ranks[0]["state"][key], value, rtol=1e-4, atol=1e-5, msg=key)
        else:
            assert torch.equal(ranks[0]["state"][key], value), key
    assert ranks[0]["pixels"] == single.metrics.pixels  # every validation pixel counted once
    assert ranks[0]["miou"] == pytest.approx(single.metrics.miou, abs=1e-3)


def _sync_bn_worker(rank: int, init_file: str, results: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 6, dtype=torch.float64)  # the same global batch on both ranks
    weight = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    norm = convert_sync_batchnorm(nn.BatchNorm2d(3).double(), torch.device("cpu"))
    assert isinstance(norm, CPUSyncBatchNorm)
    with torch.no_grad():
        norm.weight.copy_(weight)
    local = x[2 * rank : 2 * rank + 2].clone().requires_grad_(True)
    y = norm(local)
    (y * torch.arange(y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
    torch.save({"y": y.detach(), "grad": local.grad, "mean": norm.running_mean, "var": norm.running_var,
                "wgrad": norm.weight.grad}, f"{results}{rank}.pt")  # fmt: skip
    dist.destroy_process_group()


def test_cpu_sync_batchnorm_equals_batchnorm_on_the_whole_batch(tmp_path):
    mp.spawn(_sync_bn_worker, args=(str(tmp_path / "init"), str(tmp_path / "rank")), nprocs=2)
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 6, dtype=torch.float64).requires_grad_(True)
    reference = nn.BatchNorm2d(3).double()
    with torch.no_grad():
        reference.weight.copy_(torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64))
    y = reference(x)
    # each rank's loss weights its own outputs; their sum is the loss over the whole batch
    weights = torch.cat([torch.arange(y[:2].numel(), dtype=y.dtype).view_as(y[:2])] * 2)
    (y * weights).sum().backward()
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    torch.testing.assert_close(torch.cat([r["y"] for r in results]), y.detach())
    torch.testing.assert_close(torch.cat([r["grad"] for r in results]), x.grad)
    for r in results:
        torch.testing.assert_close(r["mean"], reference.running_mean)
        torch.testing.assert_close(r["var"], reference.running_var)
    # DDP would average the two ranks' parameter gradients; the sum is the whole-batch gradient
    torch.testing.assert_close(results[0]["wgrad"] + results[1]["wgrad"], reference.weight.grad)
