"""Recorded attention weights (``ccnet.ops.recording``) against a brute-force dense softmax over the
criss-cross mask, for the functional op (2-D, 3-D) and for the two loops of a small model's RCCA."""

from __future__ import annotations

import threading

import pytest
import torch

from ccnet.models import create_model
from ccnet.ops import criss_cross_attention, criss_cross_attention_3d
from ccnet.ops.recording import record_attention, recording_attention, two_step_reach
from tests.oracles import criss_cross_mask, dense_cca_block


def dense_attention(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """(B, N, N): softmax over the criss-cross set of <q_u, k_j>, by brute force on the flattened grid."""
    grid = tuple(query.shape[2:])
    energy = torch.einsum("bcu,bcj->buj", query.flatten(2).double(), key.flatten(2).double())
    return energy.masked_fill(~criss_cross_mask(grid), float("-inf")).softmax(-1)


@pytest.mark.parametrize(
    ("op", "grid"), [(criss_cross_attention, (5, 7)), (criss_cross_attention_3d, (3, 4, 5))]
)
def test_recorded_weights_equal_the_dense_softmax(op, grid):
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, *grid), torch.randn(2, 3, *grid), torch.randn(2, 4, *grid)
    expected_out = op(q, k, v)
    with record_attention() as records:
        out = op(q, k, v)
    assert len(records) == 1 and records[0].grid == grid and records[0].batch_size == 2
    oracle = dense_attention(q, k)
    for b in range(2):
        torch.testing.assert_close(records[0].matrix(b).double(), oracle[b], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out, expected_out, atol=1e-5, rtol=1e-5)  # recording changes nothing


def test_two_loops_of_a_model_and_their_two_step_reach():
    torch.manual_seed(0)
    model = create_model("ccnet_tiny", num_classes=4).eval()
    cca = model.head.context.cca
    with torch.no_grad():
        cca.gamma.fill_(1.0)  # a trained-like block: loop 2 then sees other features than loop 1
    inputs: dict[str, torch.Tensor] = {}
    hook = model.head.context.register_forward_pre_hook(lambda m, a: inputs.__setitem__("x", a[0]))
    image = torch.randn(1, 3, 48, 40)
    with torch.no_grad():
        expected = model(image).out
        with record_attention() as records:
            logits = model(image).out
    hook.remove()
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
    assert len(records) == 2  # R = 2 loops, loop 1 first

    x1 = inputs["x"].double()
    block = cca.double()
    with torch.no_grad():
        a1 = dense_attention(block.query_conv(x1), block.key_conv(x1))[0]
        x2 = dense_cca_block(x1, block)  # loop 1's output, computed by the dense oracle
        a2 = dense_attention(block.query_conv(x2), block.key_conv(x2))[0]
    grid = tuple(x1.shape[2:])
    assert records[0].grid == grid == (12, 10)  # output stride 4
    torch.testing.assert_close(records[0].matrix().double(), a1, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(records[1].matrix().double(), a2, atol=1e-5, rtol=1e-4)
    reach_oracle = a2 @ a1
    for position in [(0, 0), (7, 2), (11, 9)]:
        u = position[0] * grid[1] + position[1]
        reach = two_step_reach(records[0], records[1], position)
        torch.testing.assert_close(reach.double().flatten(), reach_oracle[u], atol=1e-5, rtol=1e-4)
        assert torch.all(reach > 0)  # two hops reach the whole image
        loop1 = records[0].weights_of(position)
        assert torch.count_nonzero(loop1) == grid[0] + grid[1] - 1  # one hop: the cross only


def test_recording_is_local_to_the_block_and_the_thread():
    q = k = v = torch.randn(1, 2, 3, 3)
    assert not recording_attention()
    other_thread_calls = []
    with record_attention() as records:
        worker = threading.Thread(target=lambda: other_thread_calls.append(criss_cross_attention(q, k, v)))
        worker.start()
        worker.join()
        assert records == [] and len(other_thread_calls) == 1
        criss_cross_attention(q, k, v)
    criss_cross_attention(q, k, v)
    assert len(records) == 1 and not recording_attention()


def test_bad_position_is_named():
    with record_attention() as records:
        criss_cross_attention(*(torch.randn(1, 2, 3, 4) for _ in range(3)))
    with pytest.raises(ValueError, match=r"position \(3, 0\) is not a position of the grid \(3, 4\)"):
        records[0].weights_of((3, 0))
