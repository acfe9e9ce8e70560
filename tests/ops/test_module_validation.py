"""Constructor and input checks of the criss-cross attention modules: clear errors, not late crashes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccnet.ops import (
    CrissCrossAttention,
    CrissCrossAttention3d,
    RecurrentCrissCrossAttention,
    RecurrentCrissCrossAttention3d,
)


@pytest.mark.parametrize("module", [RecurrentCrissCrossAttention, RecurrentCrissCrossAttention3d])
@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("recurrence", 2.5),
        ("recurrence", True),
        ("recurrence", "2"),
        ("reduction", 2.0),
        ("in_channels", 16.0),
    ],
)
def test_non_integer_hyper_parameters_are_refused(module, argument, value):
    kwargs = {"in_channels": 16, **{argument: value}}
    with pytest.raises(TypeError, match=rf"CrissCrossAttention.*: {argument} must be an integer, got"):
        module(**kwargs)


def test_numpy_integers_are_integers():
    rcca = RecurrentCrissCrossAttention(np.int64(16), recurrence=np.int32(1), reduction=np.int64(4))
    assert rcca(torch.randn(1, 16, 3, 4)).shape == (1, 16, 3, 4)


def test_negative_recurrence_is_refused():
    with pytest.raises(ValueError, match="recurrence must be >= 0, got -1"):
        RecurrentCrissCrossAttention(16, recurrence=-1)


@pytest.mark.parametrize(
    ("module", "shape"), [(CrissCrossAttention, (2, 16, 5, 6)), (CrissCrossAttention3d, (1, 16, 2, 3, 4))]
)
def test_dtype_mismatch_names_both_dtypes_and_the_shape(module, shape):
    block = module(16)
    with pytest.raises(ValueError) as error:
        block(torch.randn(shape, dtype=torch.float64))
    message = str(error.value)
    assert module.__name__ in message and "torch.float64" in message and "torch.float32" in message
    assert str(tuple(shape)) in message


def test_integer_input_is_refused():
    with pytest.raises(ValueError, match=r"torch\.int64"):
        RecurrentCrissCrossAttention(16)(torch.ones(1, 16, 3, 3, dtype=torch.int64))


def test_matching_dtypes_and_autocast_still_run():
    rcca = RecurrentCrissCrossAttention(16)
    x = torch.randn(1, 16, 4, 5, dtype=torch.float64)
    assert rcca.double()(x).dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert RecurrentCrissCrossAttention(16)(x.bfloat16()).dtype == torch.bfloat16
