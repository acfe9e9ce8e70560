"""``ccnet info`` and ``ccnet convert``, run in-process through their own argument parsers."""

from __future__ import annotations

import argparse
import re

import torch
from torch import nn

from ccnet.cli import convert, info
from ccnet.models import create_model, read_weights


def _run(module, argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv))


def _conv_flops(model: nn.Module, x: torch.Tensor) -> int:
    """2 * multiply-adds of every Conv2d, counted from the output shapes seen by forward hooks."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        total += 2 * output.numel() * (module.in_channels // module.groups) * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model.eval()(x)
    for handle in handles:
        handle.remove()
    return total


def test_summary_counts_parameters_and_flops():
    model = create_model("fcn_r50_d8", num_classes=5)
    summary = info.summarize_model(model, (32, 48))
    assert model.training  # mode restored
    assert summary["parameters"] == sum(p.numel() for p in model.parameters())
    assert sum(summary["parts"].values()) == summary["parameters"]
    assert [(f["channels"], f["stride"]) for f in summary["features"]] == [(1024, 8), (2048, 8)]
    # no attention in the FCN twin: every FLOP is a convolution FLOP
    assert summary["flops"] == _conv_flops(model, torch.zeros(1, 3, 32, 48))


def test_info_prints_model_and_zoo_entry(capsys):
    assert _run(info, ["mmseg:ccnet_r50-d8_769x769_80k_cityscapes", "--input-size", "32", "32"]) == 0
    out = capsys.readouterr().out
    params = sum(p.numel() for p in create_model("ccnet_r50_d8", num_classes=19).parameters())
    assert f"parameters: {params / 1e6:.2f}M" in out
    assert "align_corners=True" in out and "test slide stride (513, 513)" in out and "81.08" in out
    assert re.search(r"FLOPs at 1x3x32x32: [\d.]+ G", out)
    assert "feature layer4: 2048 channels, stride 8" in out


def test_info_lists_and_rejects(capsys):
    assert _run(info, []) == 0
    out = capsys.readouterr().out
    assert "ccnet_r50_d8" in out and "ssseg:ccnet_resnet101os16_voc" in out
    assert _run(info, ["ccnet_r5_d8", "--no-flops"]) == 2
    captured = (
        capsys.readouterr()
    )  # the close names are in the one-line error (stderr) since the CLI contract
    assert "ccnet_r50_d8" in captured.out + captured.err


def _mmseg_names(ours: dict) -> dict:
    """Our state dict under mmseg's key names (the documented layout)."""
    stem = {
        "conv1.0": "stem.0",
        "conv1.1": "stem.1",
        "conv1.3": "stem.3",
        "conv1.4": "stem.4",
        "conv1.6": "stem.6",
    }
    stem["bn1"] = "stem.7"
    rules = [
        (r"^head\.conv_in\.conv\.", "decode_head.convs.0.conv."),
        (r"^head\.conv_in\.norm\.", "decode_head.convs.0.bn."),
        (r"^head\.conv_out\.conv\.", "decode_head.convs.1.conv."),
        (r"^head\.conv_out\.norm\.", "decode_head.convs.1.bn."),
        (r"^head\.bottleneck\.conv\.", "decode_head.conv_cat.conv."),
        (r"^head\.bottleneck\.norm\.", "decode_head.conv_cat.bn."),
        (r"^head\.context\.cca\.gamma$", "decode_head.cca.gamma.scale"),
        (r"^head\.context\.cca\.", "decode_head.cca."),
        (r"^head\.classifier\.", "decode_head.conv_seg."),
        (r"^aux_head\.conv_in\.conv\.", "auxiliary_head.convs.0.conv."),
        (r"^aux_head\.conv_in\.norm\.", "auxiliary_head.convs.0.bn."),
        (r"^aux_head\.classifier\.", "auxiliary_head.conv_seg."),
        (r"^backbone\.(conv1\.\d|bn1)\.", lambda m: f"backbone.{stem[m.group(1)]}."),
    ]
    renamed = {}
    for key, value in ours.items():
        for pattern, replacement in rules:
            key, n = re.subn(pattern, replacement, key)
            if n:
                break
        renamed[key] = value
    return renamed


def test_convert_mmseg_file_checked_against_arch(tmp_path, capsys):
    model = create_model("ccnet_r50_d8", num_classes=19)
    with torch.no_grad():
        model.head.context.cca.gamma.fill_(0.5)
    src = tmp_path / "mmseg.pth"
    torch.save({"meta": {"iter": 80000}, "state_dict": _mmseg_names(model.state_dict())}, src)

    dst = tmp_path / "ours.safetensors"
    assert _run(convert, [str(src), str(dst), "--arch", "ccnet_r50_d8"]) == 0
    assert "mmseg -> ccnet, checked as ccnet_r50_d8" in capsys.readouterr().out
    tensors, meta = read_weights(dst)
    assert meta == {
        "format": "ccnet",
        "source": "mmseg",
        "origin": str(src),
        "num_classes": "19",
        "arch": "ccnet_r50_d8",
    }
    assert tensors.keys() == model.state_dict().keys()
    assert all(torch.equal(tensors[k], v) for k, v in model.state_dict().items())
    assert tensors["head.context.cca.gamma"].shape == ()


def test_convert_partial_file_without_and_with_arch(tmp_path, capsys):
    src = tmp_path / "partial.pth"
    torch.save(
        {"decode_head.conv_seg.weight": torch.ones(7, 512, 1, 1), "decode_head.conv_seg.bias": torch.ones(7)},
        src,
    )
    dst = tmp_path / "partial_ours.pth"
    assert _run(convert, [str(src), str(dst), "--source", "mmseg"]) == 0
    tensors, meta = read_weights(dst)
    assert set(tensors["state_dict"]) == {"head.classifier.weight", "head.classifier.bias"}
    assert meta["num_classes"] == "7" and "arch" not in meta

    assert _run(convert, [str(src), str(tmp_path / "no.pth"), "--arch", "ccnet_r50_d8"]) == 1
    err = capsys.readouterr().err
    assert "missing keys: aux_head.classifier.bias" in err
    assert not (tmp_path / "no.pth").exists()
    assert _run(convert, [str(tmp_path / "absent.pth"), str(tmp_path / "no.pth")]) == 1


def test_info_counts_video_models_on_one_clip(capsys):
    model = create_model("ccnet3d_tiny", num_classes=4)
    summary = info.summarize_model(model, (32, 48))
    assert summary["input_shape"] == (1, 5, 3, 32, 48)  # one clip of clip_length frames
    per_frame_convs = _conv_flops(model, torch.zeros(1, 5, 3, 32, 48))  # the 2-D convs on all 5 frames
    attention = summary["flops"] - per_frame_convs  # the 3-D attention over the clip: convs + products
    assert 0 < attention < per_frame_convs
    assert _run(info, ["ccnet3d_tiny", "--input-size", "32", "48", "--num-classes", "4"]) == 0
    assert "FLOPs at 1x5x3x32x48:" in capsys.readouterr().out


def test_convert_keeps_overrides_classes_and_palette_of_our_files(tmp_path):
    from ccnet.engine.setup import load_model
    from ccnet.models import save_weights

    model = create_model("ccnet_tiny", num_classes=3, recurrence=1)
    meta = {
        "arch": "ccnet_tiny",
        "model_overrides": '{"recurrence": 1}',
        "classes": '["sky", "road", "car"]',
        "palette": "[[1, 2, 3], [4, 5, 6], [7, 8, 9]]",
    }
    src = save_weights(tmp_path / "r1.safetensors", model.state_dict(), meta)
    dst = tmp_path / "converted.pth"
    assert _run(convert, [str(src), str(dst)]) == 0
    _, written = read_weights(dst)
    assert {k: written[k] for k in meta} == meta  # everything the source knew
    assert written["format"] == "ccnet" and written["num_classes"] == "3"
    reloaded, info = load_model(dst)
    assert reloaded.head.context.recurrence == 1  # not the architecture's default R=2
    assert info["classes"] == ("sky", "road", "car") and info["palette"][2] == (7, 8, 9)


def test_convert_of_a_zoo_checkpoint_carries_its_test_protocol(tmp_path, monkeypatch, capsys):
    import json

    import ccnet.models.weights
    from ccnet.engine.inference import Segmenter
    from ccnet.engine.setup import load_model, resolve_config
    from ccnet.models import ZOO

    entry = ZOO["mmseg:ccnet_r50-d8_769x769_80k_cityscapes"]
    model = create_model("ccnet_r50_d8", num_classes=19, **entry.model_kwargs)
    # the published file, under its download name, in mmseg's layout
    src = tmp_path / entry.url.rsplit("/", 1)[1]
    torch.save({"state_dict": _mmseg_names(model.state_dict())}, src)
    monkeypatch.setattr(ccnet.models.weights, "cached_download", lambda urls, **_: src)  # no network

    for origin in (entry.name, str(src)):  # the zoo name, or the downloaded file it names
        dst = tmp_path / "converted.safetensors"
        assert _run(convert, [origin, str(dst), "--force"]) == 0, capsys.readouterr().err
        _, meta = read_weights(dst)
        assert meta["arch"] == "ccnet_r50_d8" and meta["zoo"] == entry.name
        assert json.loads(meta["test_protocol"]) == {
            "mode": "slide",
            "crop_size": [769, 769],
            "stride": [513, 513],
            "test_scale": list(entry.test_scale),
        }
        assert json.loads(meta["model_overrides"]) == entry.model_kwargs
        assert (
            json.loads(meta["classes"])[:2] == ["road", "sidewalk"] and len(json.loads(meta["palette"])) == 19
        )
        reloaded, _ = load_model(dst)
        segmenter = Segmenter(reloaded)  # the protocol of the zoo name, not the generic whole-image one
        assert (segmenter.mode, segmenter.crop_size, segmenter.stride) == ("slide", (769, 769), (513, 513))
        assert reloaded.align_corners is True
        config, _ = resolve_config(None, [], str(dst))  # `ccnet eval --weights dst`: the zoo entry's config
        assert config.data.dataset == "cityscapes" and config.eval.mode == "slide"
        assert tuple(config.eval.crop_size) == (769, 769)


def test_convert_refuses_to_overwrite_its_input_or_an_existing_file(tmp_path, capsys):
    from ccnet.models import save_weights

    src = save_weights(tmp_path / "tiny.safetensors", create_model("ccnet_tiny", num_classes=2).state_dict())
    before = src.read_bytes()
    assert _run(convert, [str(src), str(src)]) == 2
    assert "is also the input" in capsys.readouterr().err
    other = tmp_path / "other.pth"
    other.write_bytes(b"keep")
    assert _run(convert, [str(src), str(other)]) == 2
    assert "--force" in capsys.readouterr().err
    assert src.read_bytes() == before and other.read_bytes() == b"keep"


def test_convert_keeps_the_class_names_and_palette_of_an_mmseg_checkpoint(tmp_path):
    import json

    src = tmp_path / "mmseg_partial.pth"
    state = {
        "decode_head.conv_seg.weight": torch.ones(2, 512, 1, 1),
        "decode_head.conv_seg.bias": torch.ones(2),
    }
    torch.save(
        {"meta": {"CLASSES": ("sky", "sea"), "PALETTE": [[0, 0, 255], [0, 128, 255]]}, "state_dict": state},
        src,
    )
    dst = tmp_path / "ours.safetensors"
    assert _run(convert, [str(src), str(dst), "--source", "mmseg"]) == 0
    _, meta = read_weights(dst)
    assert json.loads(meta["classes"]) == ["sky", "sea"]
    assert json.loads(meta["palette"]) == [[0, 0, 255], [0, 128, 255]]
