"""``create_model(..., pretrained=...)``: zoo names (download into the hub cache), local files, URLs."""

from __future__ import annotations

import shutil
import urllib.error
from pathlib import Path

import pytest
import torch

from ccnet.models import create_model, read_weights, save_weights

TINY = {"backbone": "test_resnet", "channels": 32, "aux_channels": 16}  # small files for I/O tests
ZOO_NAME = "mmseg:ccnet_r50-d8_769x769_80k_cityscapes"


@pytest.fixture
def hub_dir(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache; downloads fail unless a test replaces them."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "hub"


def _tiny_model(num_classes: int = 4):
    model = create_model("ccnet_r50_d8", num_classes=num_classes, **TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model.eval()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_file_in_our_format(tmp_path, suffix):
    source = _tiny_model()
    path = save_weights(tmp_path / f"tiny{suffix}", source.state_dict(), {"arch": "ccnet_r50_d8"})
    _, meta = read_weights(path)
    assert meta["arch"] == "ccnet_r50_d8"

    loaded = create_model("ccnet_r50_d8", pretrained=path, **TINY).eval()  # num_classes from the file
    assert loaded.num_classes == 4 and loaded.pretrained_cfg is None
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x).out, source(x).out)
    with pytest.raises(ValueError, match="for architecture 'ccnet_r50_d8', not 'fcn_r50_d8'"):
        create_model("fcn_r50_d8", pretrained=path, **TINY)


def test_local_file_with_other_class_count_is_refused(tmp_path):
    path = save_weights(tmp_path / "tiny.safetensors", _tiny_model(num_classes=4).state_dict())
    with pytest.raises(ValueError, match=r"head\.classifier\.weight"):
        create_model("ccnet_r50_d8", num_classes=7, pretrained=path, **TINY)


def test_new_classifier_loads_everything_but_the_classifiers(tmp_path):
    source = _tiny_model(num_classes=4)
    path = save_weights(tmp_path / "tiny.safetensors", source.state_dict())
    torch.manual_seed(3)
    fresh = create_model("ccnet_r50_d8", num_classes=7, **TINY)  # what a new classifier starts as
    torch.manual_seed(3)
    model = create_model("ccnet_r50_d8", num_classes=7, pretrained=path, new_classifier=True, **TINY)
    loaded, initial, trained = model.state_dict(), fresh.state_dict(), source.state_dict()
    classifiers = {"head.classifier.weight", "head.classifier.bias", "aux_head.classifier.weight"}
    classifiers |= {"aux_head.classifier.bias"}
    for key, value in loaded.items():
        expected = initial[key] if key in classifiers else trained[key]
        assert torch.equal(value, expected), key
    assert model.num_classes == 7 and model.pretrained_cfg is None
    with pytest.raises(ValueError, match="new_classifier=True needs pretrained weights"):
        create_model("ccnet_r50_d8", num_classes=7, new_classifier=True, **TINY)


def test_zoo_name_downloads_into_hub_cache_converts_and_loads(hub_dir, monkeypatch, mmseg_r50_checkpoint):
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, hash_prefix))
        torch.save(mmseg_r50_checkpoint, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    model = create_model("ccnet_r50_d8", pretrained=ZOO_NAME)
    url = calls[0][0]
    assert url.startswith("https://download.openmmlab.com/mmsegmentation/v0.5/ccnet/")
    assert calls[0][1] == "73eed8ca"  # the sha256 prefix in the file name is checked
    assert (hub_dir / "checkpoints" / url.rsplit("/", 1)[1]).is_file()
    assert model.num_classes == 19 and model.align_corners  # from the zoo entry
    assert model.pretrained_cfg.name == ZOO_NAME
    state = mmseg_r50_checkpoint["state_dict"]
    assert torch.equal(model.head.classifier.weight, state["decode_head.conv_seg.weight"])
    assert torch.equal(model.backbone.bn1.running_mean, state["backbone.stem.7.running_mean"])

    create_model("ccnet_r50_d8", pretrained=ZOO_NAME)  # second time: from the cache
    assert len(calls) == 1


def test_zoo_name_checks(hub_dir):
    with pytest.raises(ValueError, match="for architecture 'ccnet_r50_d8', not 'ccnet_r101_d8'"):
        create_model("ccnet_r101_d8", pretrained=ZOO_NAME)
    with pytest.raises(ValueError, match="19 classes"):
        create_model("ccnet_r50_d8", num_classes=21, pretrained=ZOO_NAME)
    with pytest.raises(ValueError, match=r"close names: \['mmseg:ccnet_r50-d8_769x769_80k_cityscapes'"):
        create_model("ccnet_r50_d8", pretrained="mmseg:ccnet_r50-d8_769x769_80k_cityscape")


def test_offline_error_names_the_urls(hub_dir):
    with pytest.raises(
        RuntimeError, match=r"ccnet_resnet50os16_ade20k_train\.pth.*ccnet_resnet50os16_ade20k\.pth"
    ):
        create_model("ccnet_r50_d16", pretrained="ssseg:ccnet_resnet50os16_ade20k")


def test_url_is_cached_under_its_file_name(hub_dir, tmp_path, monkeypatch):
    local = save_weights(tmp_path / "tiny.safetensors", _tiny_model().state_dict())
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda url, dst, *a, **k: shutil.copy(local, dst))
    model = create_model("ccnet_r50_d8", pretrained="https://example.org/weights/tiny.safetensors", **TINY)
    assert model.num_classes == 4
    assert (hub_dir / "checkpoints" / "tiny.safetensors").is_file()


def test_untrusted_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "payload": Path("x")}, path)  # not a plain container: refused
    with pytest.raises(ValueError, match="weights_only"):
        create_model("ccnet_r50_d8", pretrained=path, **TINY)
