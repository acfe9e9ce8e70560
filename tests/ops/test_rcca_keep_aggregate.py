"""RCCA on the fast path keeps the aggregate A x for backward in its last loop only (issue 22): backward runs
the last loop first, and that backward recomputes nothing; each earlier loop's backward recomputes its
aggregate once per chunk; the gradients stay the dense oracle's. Counted by spying on the chunk kernel that
computes the aggregate (one call per chunk), per backward call of the block."""

from __future__ import annotations

import pytest
import torch

import ccnet
from ccnet.ops import autograd, chunks
from tests.oracles import dense_cca_block


@pytest.mark.parametrize("recurrence", [1, 2, 3])
def test_only_the_last_loop_keeps_its_aggregate(recurrence, monkeypatch):
    monkeypatch.setattr("ccnet.ops.dispatch.SMALL_PROBLEM_ELEMENTS", 0)  # the fast path at this size
    monkeypatch.setattr("ccnet.ops.chunks.CHUNK_ELEMENTS", 1)  # several chunks per image
    aggregates: list[int] = [0]  # aggregate calls: in the forward, then in each backward call in turn
    original_aggregate, original_backward = chunks.aggregate, autograd.fast_backward

    def aggregate(*args):
        aggregates[-1] += 1
        return original_aggregate(*args)

    def backward(*args, **kwargs):
        aggregates.append(0)
        return original_backward(*args, **kwargs)

    monkeypatch.setattr(chunks, "aggregate", aggregate)
    monkeypatch.setattr(autograd, "fast_backward", backward)
    torch.manual_seed(4)
    rcca = ccnet.RecurrentCrissCrossAttention(8, recurrence=recurrence, reduction=2).double()
    with torch.no_grad():
        rcca.cca.gamma.fill_(0.7)
    x = torch.randn(2, 8, 4, 5, dtype=torch.float64, requires_grad=True)
    y = rcca(x)
    assert aggregates[0] % recurrence == 0 and aggregates[0] // recurrence >= 2
    per_loop = aggregates[0] // recurrence  # one aggregate per chunk and loop
    grads = torch.autograd.grad(y.square().sum(), [x, *rcca.parameters()])
    # backward order: the last loop (kept its aggregate: no recomputation), then the earlier ones
    assert aggregates[1:] == [0] + [per_loop] * (recurrence - 1)

    expected = x
    for _ in range(recurrence):
        expected = dense_cca_block(expected, rcca.cca)
    want = torch.autograd.grad(expected.square().sum(), [x, *rcca.parameters()])
    for got, ref in zip(grads, want, strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-9)
