"""Architectures as data: overrides reach the modules they name, the run config mirrors every option, and
bad options are refused with the valid names."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ccnet.config import ModelConfig, load_config
from ccnet.models import Architecture, HeadConfig, create_model, get_model_entry, list_models
from ccnet.ops import RecurrentCrissCrossAttention, RecurrentCrissCrossAttention3d


def test_run_config_has_an_option_for_every_architecture_and_head_field():
    options = {f.name for f in dataclasses.fields(ModelConfig)}
    head = {f.name for f in dataclasses.fields(HeadConfig)}
    architecture = {f.name for f in dataclasses.fields(Architecture)} - {"head", "preprocess"}
    assert head <= options and architecture <= options
    assert set(ModelConfig().overrides()) == set()  # nothing set: every architecture keeps its defaults


@pytest.mark.parametrize(
    ("name", "rcca"),
    [("ccnet_tiny", RecurrentCrissCrossAttention), ("ccnet3d_tiny", RecurrentCrissCrossAttention3d)],
)
def test_config_overrides_reach_the_attention(name, rcca):
    config = load_config(None, [f"model.name={name}", "model.recurrence=1", "model.reduction=4"])
    model = create_model(config.model.name, num_classes=3, **config.model.overrides())
    context = model.head.context
    assert type(context) is rcca and context.recurrence == 1
    assert context.cca.reduction == 4 and context.cca.query_conv.out_channels == 32 // 4


def test_overrides_leave_the_registered_defaults_alone():
    entry = get_model_entry("ccnet_r50_d8")
    changed = entry.architecture.with_overrides(recurrence=1, output_stride=16, aux_channels=512)
    assert (changed.head.recurrence, changed.output_stride, changed.head.aux_channels) == (1, 16, 512)
    assert (entry.architecture.head.recurrence, entry.architecture.output_stride) == (2, 8)
    with torch.device("meta"):
        assert create_model("ccnet_r50_d8", num_classes=19).head.context.recurrence == 2


def test_bad_options_are_refused_with_the_valid_names():
    with pytest.raises(ValueError, match=r"unknown model option\(s\) \['recurence'\]; valid: .*'recurrence'"):
        create_model("ccnet_tiny", num_classes=2, recurence=1)
    with pytest.raises(ValueError, match="video models"):
        create_model("ccnet_tiny", num_classes=2, clip_length=3)
    with pytest.raises(ValueError, match="recurrence must be >= 0"):
        create_model("ccnet_tiny", num_classes=2, recurrence=-1)


def test_video_models_are_declared_with_their_2d_twin():
    for name in list_models("ccnet3d_*"):
        entry = get_model_entry(name)
        twin = get_model_entry(entry.weights_from)
        assert entry.architecture.is_video and not twin.architecture.is_video
        assert dataclasses.replace(entry.architecture, clip_length=None) == twin.architecture
