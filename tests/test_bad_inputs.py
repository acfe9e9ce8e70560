"""The bad-input catalogue: every reported bad input, run through the real ``ccnet`` command line in a
subprocess, ends in exactly one line ``ccnet <command>: error: <message naming the culprit>`` on stderr, with
exit code 2 (usage / config) or 1 (bad data, faults), no traceback (except under ``--debug``), and leaves
the user's files as they were.

Most cases fail while the config or the datasets are read, before any training; the few that train run two
iterations of the tiny model on a 6-image folder dataset. Starting Python with torch takes seconds, more
than most cases, so the ``cli`` fixture runs them one after the other in one long-lived ``python`` process
through the real entry point ``ccnet.cli.main`` (exit code, stdout and stderr as a fresh process would show
them); the cases where the process itself matters (--debug, CCNET_DEBUG, Ctrl-C, DataLoader worker processes,
a training run) start ``python -m ccnet`` of their own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.bad_input import assert_one_line_error, cli_server, run_cli, tree_hash
from tests.data.fakes import stripes, write_image, write_label

# Keeps every training run short and quiet (2 iterations, no worker processes, no progress bar).
ENV_DEBUG = {"CCNET_DEBUG": "1"}
QUICK = ("train.max_iters=2", "data.num_workers=0", "train.progress=false")
FOLDER_META = "classes: [background, cat, dog]\n"


def make_folder_dataset(
    root: Path, meta: str = FOLDER_META, labels: tuple[int, ...] = (0, 1, 2, 255)
) -> Path:
    """A folder dataset of 32x64 images: 4 in train/, 2 in val/, every mask the stripes ``labels``."""
    for split, count in (("train", 4), ("val", 2)):
        for k in range(count):
            write_image(root / "images" / split / f"im{k}.png", seed=k)
            write_label(root / "masks" / split / f"im{k}.png", stripes(list(labels)))
    (root / "meta.yaml").write_text(meta)
    return root


def train_folder(runner, root: Path, work_dir: Path, *extra: str):
    dataset = ("data.dataset=folder", f"data.root={root}", "train.batch_size=2")
    return runner("train", *dataset, f"train.work_dir={work_dir}", *QUICK, *extra)


def train_default(runner, tmp_path: Path, *extra: str):
    return runner("train", *QUICK, f"train.work_dir={tmp_path / 'run'}", *extra)


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """``cli(*args)`` -> CompletedProcess of ``ccnet ARGS``, run in one long-lived Python process."""
    with cli_server(tmp_path_factory.mktemp("cli-cwd")) as run:  # runs without a work_dir write here
        yield run


@pytest.fixture
def folder(tmp_path) -> Path:
    return make_folder_dataset(tmp_path / "folder")


# --- config values: exit 2, the key named ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("train.batch_size=0", ("train.batch_size", "expected an integer >= 1, got 0")),
        ("train.checkpoint_interval=-3", ("train.checkpoint_interval", ">= 0", "-3")),
        ("train.keep_last=-1", ("train.keep_last", ">= 1", "-1")),
        ("optim.lr=-1", ("optim.lr", "> 0", "-1")),
        ("data.num_workers=-1", ("data.num_workers", ">= 0", "-1")),
        ("train.max_iters=0", ("train.max_iters", ">= 1")),
        ("train.val_interval=-1", ("train.val_interval", ">= 0")),
        ("train.log_interval=0", ("train.log_interval", ">= 1")),
        ("data.crop_size=[0,64]", ("data.crop_size[0]", ">= 1")),
        ("eval.scales=[1.0,-0.5]", ("eval.scales[1]", "> 0")),
        ("eval.scales=[]", ("eval.scales",)),
        ("eval.batch_size=0", ("eval.batch_size", ">= 1")),
        ("data.ratio_range=[2.0,0.5]", ("data.ratio_range", "low <= high")),
        ("optim.lr=.nan", ("optim.lr", "nan")),
        # wrong types, unknown keys, bad syntax
        ("train.max_iters=abc", ("train.max_iters", "expected an integer", "abc")),
        ("train.progress=maybe", ("train.progress", "true or false")),
        ("train.bogus=1", ("train.bogus", "valid keys")),
        ("train..max_iters=1", ("train..max_iters", "key.sub=value")),
        ("train.device=tpu", ("train.device", "tpu")),
        ("data.options.foo=1", ("data.options.foo", "'context'", "length", "image_size")),
        ("data.options.marker_size=1000", ("data.options", "marker_size")),
        ("data.dataset=nope", ("data.dataset", "nope", "available", "folder")),
        ("data.dataset=folder", ("data.root", "folder")),  # a file dataset without its directory
    ],
)
def test_config_value_is_refused_naming_the_key(cli, tmp_path, override, fragments):
    result = train_default(cli, tmp_path, override)
    assert_one_line_error(result, 2, "train", *fragments)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_a_gpu(cli, tmp_path):
    result = train_default(cli, tmp_path, "train.device=cuda")
    assert_one_line_error(result, 2, "train", "train.device", "CUDA is not available")


def test_more_than_one_config(cli, tmp_path):
    assert_one_line_error(
        train_default(cli, tmp_path, "default", "video"), 2, "train", "more than one config"
    )


def test_missing_config_file(cli, tmp_path):
    result = cli("train", str(tmp_path / "missing.yaml"), *QUICK)
    assert_one_line_error(result, 2, "train", "missing.yaml")


def test_invalid_yaml_config_is_named_and_left_alone(cli, tmp_path):
    config = tmp_path / "configs" / "broken.yaml"
    config.parent.mkdir()
    config.write_text("train: {max_iters: [1, 2\n")
    before = tree_hash(config.parent)
    result = cli("train", str(config), *QUICK)
    assert_one_line_error(result, 2, "train", "broken.yaml", "not valid YAML")
    assert tree_hash(config.parent) == before


def test_config_file_with_a_bad_value_is_named_and_left_alone(cli, tmp_path):
    config = tmp_path / "configs" / "mine.yaml"
    config.parent.mkdir()
    config.write_text("train:\n  batch_size: 0\n")
    before = tree_hash(config.parent)
    assert_one_line_error(cli("train", str(config), *QUICK), 2, "train", "train.batch_size")
    assert tree_hash(config.parent) == before


# --- command-line usage: exit 2 ---------------------------------------------------------------------------
def test_unknown_command_option(cli):
    result = cli("train", "--bogus")
    assert_one_line_error(result, 2, "train", "unrecognized arguments: --bogus")
    assert "usage:" not in result.stderr


def test_unknown_command():
    result = run_cli("nope")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("ccnet: error: ") and "'nope'" in result.stderr


def test_info_zero_input_size(cli):
    result = cli("info", "ccnet_tiny", "--input-size", "0", "0")
    assert_one_line_error(result, 2, "info", "--input-size", "got 0")


def test_info_unknown_model(cli):
    assert_one_line_error(cli("info", "unknown_name"), 2, "info", "unknown_name", "did you mean", "_tiny")


def test_data_check_unknown_dataset(cli):
    assert_one_line_error(cli("data", "check", "nope"), 2, "data check", "nope", "available")


def test_data_check_zero_limit(cli, folder):
    result = cli("data", "check", "folder", folder, "--limit", "0")
    assert_one_line_error(result, 2, "data check", "--limit", "got 0")


# --- datasets: switching, missing, empty, bad files --------------------------------------------------------
def test_dataset_switched_on_the_command_line_does_not_inherit_options(folder, tmp_path):
    """default.yaml gives the context dataset `length`; the folder dataset must not receive it."""
    before = tree_hash(folder)
    result = train_folder(run_cli, folder, tmp_path / "run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "final mIoU" in result.stdout
    assert tree_hash(folder) == before


def test_nonexistent_dataset_folder(cli, tmp_path):
    result = train_folder(cli, tmp_path / "nowhere", tmp_path / "run")
    assert_one_line_error(result, 1, "train", str(tmp_path / "nowhere"), "does not exist")


def test_empty_folder_dataset(cli, tmp_path):
    root = tmp_path / "empty"
    (root / "images" / "train").mkdir(parents=True)
    (root / "meta.yaml").write_text(FOLDER_META)
    before = tree_hash(root)
    result = train_folder(cli, root, tmp_path / "run")
    assert_one_line_error(result, 1, "train", str(root), "no images")
    assert tree_hash(root) == before


@pytest.mark.parametrize(
    ("meta", "fragments"),
    [
        ("classes: [bg, cat, dog]\nignore_index: abc\n", ("meta.yaml", "ignore_index", "abc")),
        (
            "classes: [bg, cat, dog]\nreduce_zero_label: 'false'\n",
            ("meta.yaml", "reduce_zero_label", "'false'"),
        ),
        ("classes: [bg, cat, dog]\nignore_idx: 200\n", ("meta.yaml", "ignore_idx", "valid keys")),
        ("classes: [bg, cat, dog]\ncrop_size: [0, 64]\n", ("meta.yaml", "crop_size")),
        ("classes: bg\n", ("meta.yaml", "classes")),
    ],
)
def test_bad_folder_meta(cli, tmp_path, meta, fragments):
    root = make_folder_dataset(tmp_path / "folder", meta=meta)
    before = tree_hash(root)
    assert_one_line_error(cli("data", "check", "folder", root, "--no-progress"), 1, "data check", *fragments)
    assert_one_line_error(train_folder(cli, root, tmp_path / "run"), 1, "train", *fragments)
    assert tree_hash(root) == before


def test_dangling_symlink_is_reported(cli, folder, tmp_path):
    link = folder / "images" / "train" / "im9.png"
    link.symlink_to(tmp_path / "moved-away.png")
    result = cli("data", "check", "folder", folder, "--no-progress")
    assert_one_line_error(result, 1, "data check", str(link), "broken symbolic link")
    assert_one_line_error(train_folder(cli, folder, tmp_path / "run"), 1, "train", str(link))


def test_mask_size_mismatch(cli, folder, tmp_path):
    mask = folder / "masks" / "train" / "im0.png"
    write_label(mask, stripes([0, 1], height=16, width=16))
    before = tree_hash(folder)
    result = cli("data", "check", "folder", folder, "--no-progress")
    assert_one_line_error(result, 1, "data check", "im0.png", "32x64", "16x16")
    assert_one_line_error(train_folder(cli, folder, tmp_path / "run"), 1, "train", str(mask), "16x16")
    assert tree_hash(folder) == before


def test_colour_mask(cli, folder, tmp_path):
    mask = folder / "masks" / "train" / "im1.png"
    Image.fromarray(np.zeros((32, 64, 3), dtype=np.uint8)).save(mask)
    result = cli("data", "check", "folder", folder, "--no-progress")
    assert_one_line_error(result, 1, "data check", str(mask), "class-index")


def test_every_label_ignored_is_refused(cli, tmp_path):
    root = make_folder_dataset(tmp_path / "folder", labels=(255, 255))
    before = tree_hash(root)
    result = cli("data", "check", "folder", root, "--no-progress")
    assert_one_line_error(result, 1, "data check", "folder train", "every label pixel", "ignore")
    result = train_folder(cli, root, tmp_path / "run")
    assert_one_line_error(result, 1, "train", "'folder'", "split 'train'", str(root), "ignore")
    assert tree_hash(root) == before


def test_label_values_out_of_range(cli, tmp_path):
    root = make_folder_dataset(tmp_path / "folder", labels=(0, 7))
    result = cli("data", "check", "folder", root, "--no-progress")
    assert_one_line_error(result, 1, "data check", "im0.png")


def test_sixteen_bit_images_are_scaled_and_reported(cli, folder):
    image = folder / "images" / "train" / "im0.png"
    ramp = np.linspace(0, 65535, 32 * 64).astype(np.uint16).reshape(32, 64)
    Image.fromarray(ramp).save(image)
    result = cli("data", "check", "folder", folder, "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "16-bit images: 1" in result.stdout and "im0.png" in result.stdout


def test_corrupt_image_in_a_dataloader_worker(folder, tmp_path):
    """The last training image is garbage: the datasets' up-front label check stops at the first (good)
    item, so the worker process meets it; its 60-line traceback must become one line naming the file."""
    bad = folder / "images" / "train" / "im3.png"
    bad.write_bytes(b"not a png")
    before = tree_hash(folder)
    result = train_folder(run_cli, folder, tmp_path / "run", "data.num_workers=1", "train.max_iters=4")
    line = assert_one_line_error(result, 1, "train", str(bad), "cannot be decoded")
    assert "Original Traceback" not in result.stderr and "worker" not in line
    assert tree_hash(folder) == before


# --- --debug and Ctrl-C ------------------------------------------------------------------------------------
def test_debug_shows_the_traceback(tmp_path):
    result = run_cli("--debug", "train", *QUICK, f"train.work_dir={tmp_path / 'run'}", "data.options.foo=1")
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr and "data.options.foo" in result.stderr


def test_debug_through_the_environment(tmp_path):
    """CCNET_DEBUG=1 reaches commands started without the option (torchrun workers, subprocesses)."""
    result = run_cli(
        "train", *QUICK, f"train.work_dir={tmp_path / 'run'}", "data.options.foo=1", env=ENV_DEBUG
    )
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr and "data.options.foo" in result.stderr


def test_debug_after_the_command_is_accepted(cli, tmp_path):
    result = cli("train", "--debug", *QUICK, f"train.work_dir={tmp_path / 'run'}", "data.options.foo=1")
    assert "Traceback (most recent call last)" in result.stderr and "unrecognized" not in result.stderr


def test_one_line_messages_of_unexpected_and_worker_errors():
    """The top-level handler's wording (in-process: no command fails this way on purpose)."""
    from ccnet.cli.common import error_exit_code, error_message

    assert error_message(ZeroDivisionError("division by zero")) == "ZeroDivisionError: division by zero"
    assert error_message(ZeroDivisionError("x"), name_unexpected=False) == "x"  # a command vouches for it
    assert error_message(ValueError("a\n  b.png: bad")) == "a; b.png: bad"
    worker = (
        "Caught DatasetError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n    raise OSError\nOSError: cannot identify\n\nThe above exception was '
        "the direct cause of the following exception:\n\nTraceback (most recent call last):\n"
        '  File "y.py", line 2, in g\n    raise DatasetError(...)\n'
        "ccnet.data.files.DatasetError: image /data/a.png cannot be decoded\n"
    )
    assert error_message(ValueError(worker)) == "image /data/a.png cannot be decoded"
    assert error_message(RuntimeError(worker.replace("ccnet.data.files.DatasetError", "KeyError"))) == (
        "KeyError: image /data/a.png cannot be decoded"
    )
    from ccnet.config import ConfigError

    assert error_exit_code(ConfigError("x")) == 2 and error_exit_code(ValueError("x")) == 1


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_is_one_line_and_exit_130(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "ccnet", "train", "train.max_iters=100000", "data.num_workers=0",
         "train.progress=false", "train.log_interval=1", f"train.work_dir={tmp_path / 'run'}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ},
    )  # fmt: skip
    deadline = time.monotonic() + 120
    try:
        # wait until training runs (the first log line), then interrupt as a user would
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line or "iteration 1/" in line:
                break
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=120)
    finally:
        process.kill()
    result = subprocess.CompletedProcess(process.args, process.returncode, "", rest)
    assert_one_line_error(result, 130, "train", "interrupted")


# A command whose run() fails in a way no command anticipates, through the real entry point: the top-level
# handler of ccnet.cli.main is what stands between it and a traceback.
_BROKEN_COMMAND = """
import sys
import ccnet.cli.info as command
from ccnet.cli import main

def run(args):
    raise {error}

command.run = run
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    ("error", "argv", "code", "fragment"),
    [
        ("ZeroDivisionError('division by zero')", ["info"], 1, "ZeroDivisionError: division by zero"),
        ("KeyboardInterrupt()", ["info"], 130, "interrupted"),
        ("RuntimeError('first\\nsecond')", ["info"], 1, "RuntimeError: first; second"),
    ],
)
def test_top_level_handler_turns_any_error_into_one_line(error, argv, code, fragment):
    script = _BROKEN_COMMAND.format(error=error)
    result = subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=300
    )
    assert_one_line_error(result, code, "info", fragment)


def test_top_level_handler_reraises_under_debug():
    script = _BROKEN_COMMAND.format(error="ZeroDivisionError('division by zero')")
    result = subprocess.run(
        [sys.executable, "-c", script, "--debug", "info"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr and "ZeroDivisionError" in result.stderr
