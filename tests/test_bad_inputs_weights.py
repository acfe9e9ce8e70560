"""Bad-input catalogue of evaluation, weights and convert / export / predict: each case runs the real
``ccnet`` command line in a subprocess and checks that it ends in one clear line naming the culprit, with
the documented exit code (2: what the user asked wrongly, 1: bad data and faults), no traceback, and that
the files the user already had (weights, images, a run folder) are unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ccnet.models import create_model
from ccnet.models.weights import read_weights, save_weights
from tests.bad_input import assert_one_line_error, cli_server, run_cli, tree_hash

SMALL_R50 = {"backbone": "test_resnet", "channels": 32, "aux_channels": 16}  # a small ccnet_r50_d8
CONTEXT_CLASSES = ["background", "red", "green", "blue"]  # the built-in dataset's classes
# config items go first: argparse takes the items (one nargs="*" positional) in one run only
FAST_EVAL = ("data.val_options.length=2", "data.num_workers=0")


def _folder_dataset(root: Path, classes: list[str], *, corrupt: str | None = None) -> Path:
    """A ``folder`` dataset of two 32x32 images with masks of ``len(classes)`` classes (see
    ``ccnet/data/folder.py``); ``corrupt`` names an image whose bytes are garbage."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
            root / "images" / f"{name}.png"
        )
        mask = rng.integers(0, len(classes), (32, 32), dtype=np.uint8)
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    if corrupt:
        (root / "images" / f"{corrupt}.png").write_bytes(b"not a png at all")
    (root / "meta.yaml").write_text(json.dumps({"classes": classes}))
    return root


def _folder_config(path: Path, root: Path) -> Path:
    """An eval config of the tiny model on the folder dataset at ``root`` (no options of other datasets)."""
    path.write_text(
        f"name: folder_eval\nmodel:\n  name: ccnet_tiny\ndata:\n  dataset: folder\n  root: {root}\n"
        "  num_workers: 0\n"
    )
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A tiny trained run (4 context classes), copies of its weights outside the run, small R-50 weights
    with and without their architecture named, broken weight files, folder datasets and an image."""
    tmp = tmp_path_factory.mktemp("bad_weights")
    run = tmp / "run"
    result = run_cli(
        "train",
        "train.max_iters=2",
        "data.options.length=16",
        "data.val_options.length=2",
        "train.progress=false",
        "data.num_workers=0",
        f"train.work_dir={run}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    weights = tmp / "weights"
    weights.mkdir()
    tiny = weights / "tiny.safetensors"
    tiny.write_bytes((run / "model.safetensors").read_bytes())
    r50 = create_model("ccnet_r50_d8", num_classes=4, **SMALL_R50).eval()
    torch.save({"state_dict": r50.state_dict()}, weights / "anonymous_r50.pth")  # names no architecture
    save_weights(
        weights / "named_r50.safetensors",
        r50.state_dict(),
        {
            "arch": "ccnet_r50_d8",
            "model_overrides": json.dumps(SMALL_R50),
            "classes": json.dumps(CONTEXT_CLASSES),
        },
    )
    content = tiny.read_bytes()
    (weights / "truncated.safetensors").write_bytes(content[: len(content) // 2])
    (weights / "random.safetensors").write_bytes(np.random.default_rng(1).bytes(4096))
    (weights / "empty.safetensors").write_bytes(b"")
    data = tmp / "data"
    three = _folder_dataset(data / "three", ["sky", "road", "car"])
    renamed = _folder_dataset(data / "renamed", ["void", "cat", "dog", "bird"])
    corrupt = _folder_dataset(data / "corrupt", CONTEXT_CLASSES, corrupt="b")
    configs = tmp / "configs"
    configs.mkdir()
    return {
        "tmp": tmp,
        "run": run,
        "weights": weights,
        "tiny": tiny,
        "anonymous_r50": weights / "anonymous_r50.pth",
        "named_r50": weights / "named_r50.safetensors",
        "data": data,
        "image": three / "images" / "a.png",
        "three": _folder_config(configs / "three.yaml", three),
        "renamed": _folder_config(configs / "renamed.yaml", renamed),
        "corrupt": _folder_config(configs / "corrupt.yaml", corrupt),
    }


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """``cli(*args)`` -> CompletedProcess of ``ccnet ARGS``, run in one long-lived Python process."""
    with cli_server(tmp_path_factory.mktemp("cli-cwd")) as run:
        yield run


@pytest.fixture
def unchanged(files):
    """The run folder, the weights and the datasets are the same after the test as before it."""
    before = {name: tree_hash(files[name]) for name in ("run", "weights", "data")}
    yield
    assert {name: tree_hash(files[name]) for name in ("run", "weights", "data")} == before


# --- 1. weights against the dataset ------------------------------------------------------------------------


def test_eval_of_4_class_weights_on_a_3_class_dataset_names_both(cli, files, unchanged, tmp_path):
    result = cli(
        "eval",
        files["three"],
        "--weights",
        files["tiny"],
        "--split",
        "all",
        "--out",
        tmp_path,
        "--no-progress",
    )
    line = assert_one_line_error(result, 2, "eval", str(files["tiny"]), "4 classes", "'folder'", "3 classes")
    assert "sky" in line and "background" in line
    assert not list(tmp_path.iterdir())  # no report of a meaningless score


def test_eval_with_other_class_names_names_both_lists(cli, files, unchanged, tmp_path):
    result = cli(
        "eval",
        files["renamed"],
        "--weights",
        files["tiny"],
        "--split",
        "all",
        "--out",
        tmp_path,
        "--no-progress",
    )
    assert_one_line_error(result, 2, "eval", str(files["tiny"]), "background, red", "void, cat, dog, bird")


def test_eval_on_a_split_with_a_corrupt_image_names_the_image(cli, files, unchanged, tmp_path):
    result = cli(
        "eval",
        files["corrupt"],
        "--weights",
        files["tiny"],
        "--split",
        "all",
        "--out",
        tmp_path,
        "--no-progress",
    )
    assert_one_line_error(result, 1, "eval", str(files["data"] / "corrupt" / "images" / "b.png"))


# --- 4. the weights' architecture against the model -------------------------------------------------------


def test_eval_of_weights_naming_their_architecture_uses_it_outside_a_run(cli, files, unchanged, tmp_path):
    # the built-in default config's ccnet_tiny must not be forced on a file that says it is a ccnet_r50_d8
    result = cli("eval", *FAST_EVAL, "--weights", files["named_r50"], "--out", tmp_path, "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mIoU" in result.stdout


def test_a_model_named_against_the_weights_says_what_the_file_is(cli, files, unchanged, tmp_path):
    result = cli(
        "eval", *FAST_EVAL, "model.name=ccnet_tiny", "--weights", files["named_r50"], "--out", tmp_path
    )
    assert_one_line_error(
        result, 2, "eval", str(files["named_r50"]), "'ccnet_r50_d8'", "'ccnet_tiny'", "4 classes"
    )


def test_weights_that_do_not_fit_list_a_few_keys_and_counts_not_all(cli, files, unchanged, tmp_path):
    result = cli(
        "predict",
        files["image"],
        "--weights",
        files["anonymous_r50"],
        "--model",
        "ccnet_tiny",
        "--out",
        tmp_path,
    )
    line = assert_one_line_error(
        result, 2, "predict", str(files["anonymous_r50"]), "no architecture named", "'ccnet_tiny'", "in all)"
    )
    assert line.count("backbone.layer") <= 5 and len(line) < 1500  # a few examples, not 300 key names
    assert not list(tmp_path.iterdir())


# --- 5. unreadable weights and downloads ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "name"),
    [("predict", "truncated.safetensors"), ("predict", "random.safetensors"), ("eval", "empty.safetensors")],
)
def test_unreadable_weights_are_one_line_naming_the_file(cli, files, unchanged, tmp_path, command, name):
    path = files["weights"] / name
    if command == "predict":
        result = cli("predict", files["image"], "--weights", path, "--out", tmp_path, "--no-progress")
    else:
        result = cli("eval", *FAST_EVAL, "--weights", path, "--out", tmp_path, "--no-progress")
    line = assert_one_line_error(result, 1, command, str(path))
    assert "SafetensorError" not in line


def test_weights_url_offline_is_fetched_like_pretrained_and_named(files, unchanged, tmp_path):
    url = "http://127.0.0.1:9/ccnet_offline_weights.safetensors"  # port 9: connection refused, no network
    env = {"TORCH_HOME": str(tmp_path / "hub")}
    result = run_cli(
        "predict", files["image"], "--weights", url, "--out", tmp_path / "out", "--no-progress", env=env
    )
    assert_one_line_error(result, 1, "predict", url, "could not download")
    assert not (tmp_path / "out").exists()


# --- 6. outputs in the way --------------------------------------------------------------------------------


@pytest.mark.parametrize("under_a_file", [False, True])
def test_predict_out_on_a_file_is_refused_before_any_work(cli, files, unchanged, under_a_file):
    out = files["tiny"] / "labels" if under_a_file else files["tiny"]
    result = cli("predict", files["image"], "--weights", files["tiny"], "--out", out, "--no-progress")
    assert_one_line_error(result, 2, "predict", "--out", str(files["tiny"]), "not a folder")


def test_eval_out_on_a_file_is_refused(cli, files, unchanged):
    result = cli("eval", *FAST_EVAL, "--weights", files["tiny"], "--out", files["tiny"])
    assert_one_line_error(result, 2, "eval", "--out", str(files["tiny"]), "not a folder")


@pytest.mark.parametrize(
    ("dataset", "fragments"),
    [
        ("folder", ("--dataset folder", "meta.yaml")),
        ("cityscapes", ("--dataset cityscapes", "19 classes", "4")),
    ],
)
def test_predict_dataset_without_colours_or_of_other_classes(
    cli, files, unchanged, tmp_path, dataset, fragments
):
    result = cli(
        "predict",
        files["image"],
        "--weights",
        files["tiny"],
        "--out",
        tmp_path,
        "--dataset",
        dataset,
        "--no-progress",
    )
    assert_one_line_error(result, 2, "predict", *fragments)


def test_predict_dataset_may_be_a_folder_dataset_root(cli, files, unchanged, tmp_path):
    root = files["data"] / "renamed"  # 4 classes: its colours are taken
    result = cli(
        "predict",
        files["image"],
        "--weights",
        files["tiny"],
        "--out",
        tmp_path,
        "--dataset",
        root,
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "a.png").is_file()


# --- 3. convert and export never overwrite their input ----------------------------------------------------


def test_convert_onto_its_own_input_is_refused(cli, files, unchanged):
    result = cli("convert", files["tiny"], files["tiny"])
    assert_one_line_error(result, 2, "convert", str(files["tiny"]), "is also the input")


def test_convert_onto_an_existing_file_needs_force(cli, files, unchanged, tmp_path):
    existing = tmp_path / "existing.safetensors"
    existing.write_bytes(b"keep me")
    result = cli("convert", files["tiny"], existing)
    assert_one_line_error(result, 2, "convert", str(existing), "--force")
    assert existing.read_bytes() == b"keep me"
    result = cli("convert", files["tiny"], existing, "--force")
    assert result.returncode == 0, result.stderr[-3000:]
    _, meta = read_weights(existing)
    assert meta["arch"] == "ccnet_tiny" and json.loads(meta["classes"]) == CONTEXT_CLASSES


def test_convert_against_another_architecture_lists_a_few_keys(cli, files, unchanged, tmp_path):
    result = cli("convert", files["tiny"], tmp_path / "r50.safetensors", "--arch", "ccnet_r50_d8")
    line = assert_one_line_error(result, 1, "convert", str(files["tiny"]), "'ccnet_r50_d8'", "in all)")
    assert len(line) < 1500
    assert not (tmp_path / "r50.safetensors").exists()


def test_export_onto_its_own_weights_or_under_a_file_is_refused(cli, files, unchanged):
    result = cli("export", "--weights", files["tiny"], "--format", "torchscript", files["tiny"])
    assert_one_line_error(result, 2, "export", str(files["tiny"]), "is also the input")
    result = cli("export", "--weights", files["tiny"], "--format", "torchscript", files["tiny"] / "model.pt")
    assert_one_line_error(result, 2, "export", str(files["tiny"]), "not a folder")


def test_export_onto_an_existing_file_needs_force(cli, files, unchanged, tmp_path):
    existing = tmp_path / "model.pt"
    existing.write_bytes(b"keep me")
    result = cli("export", "--weights", files["tiny"], "--format", "torchscript", existing, "--no-check")
    assert_one_line_error(result, 2, "export", str(existing), "--force")
    assert existing.read_bytes() == b"keep me"
