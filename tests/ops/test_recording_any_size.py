"""Recording the attention weights works whatever the input size: inside ``record_attention`` the op takes
the reference path even where it would take the fast path (which records nothing), and the recorded
weights of each loop are the dense softmax of that loop's input (independent oracle: the energies masked
to the criss-cross set, softmaxed in float64)."""

from __future__ import annotations

import torch

import ccnet
from ccnet.ops.recording import record_attention
from tests.oracles import criss_cross_mask


def _dense_weights(block, x: torch.Tensor) -> torch.Tensor:
    q, k = block.query_conv(x), block.key_conv(x)
    energy = torch.einsum("bcu,bcj->buj", q.flatten(2), k.flatten(2))
    return energy.masked_fill(~criss_cross_mask(tuple(x.shape[2:])), float("-inf")).softmax(-1)


def test_recording_takes_the_reference_path_where_the_fast_path_would_run(monkeypatch):
    monkeypatch.setattr("ccnet.ops.dispatch.SMALL_PROBLEM_ELEMENTS", 0)  # every input "large"
    torch.manual_seed(5)
    rcca = ccnet.RecurrentCrissCrossAttention(8, recurrence=2, reduction=2).double().eval()
    with torch.no_grad():
        rcca.cca.gamma.fill_(1.0)
    x = torch.randn(1, 8, 5, 6, dtype=torch.float64)
    with torch.no_grad():
        expected = rcca(x)
        with record_attention() as records:
            y = rcca(x)
        x2 = rcca.cca(x)  # loop 2's input
        oracle = [_dense_weights(rcca.cca, x)[0], _dense_weights(rcca.cca, x2)[0]]
    assert len(records) == 2
    torch.testing.assert_close(y, expected, rtol=1e-9, atol=1e-9)
    for record, want in zip(records, oracle, strict=True):
        torch.testing.assert_close(record.matrix(0).double(), want, rtol=1e-5, atol=1e-6)
