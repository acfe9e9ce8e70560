"""Config: dataclass defaults (the paper's recipe), YAML with one base, key=value overrides, errors naming
the key, the shipped configs, and the saved config round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccnet.config import (
    CONFIG_DIR,
    Config,
    ConfigError,
    config_to_dict,
    load_config,
    save_config,
)

SHIPPED = sorted(p for p in CONFIG_DIR.glob("*.yaml"))


def test_defaults_are_the_paper_recipe():
    config = Config()
    assert (config.optim.lr, config.optim.momentum, config.optim.weight_decay) == (0.01, 0.9, 5e-4)
    assert (config.optim.power, config.optim.min_lr) == (0.9, 1e-4)
    assert config.loss.aux_weight == 0.4 and config.loss.ignore_index == 255
    assert (config.loss.ohem.thresh, config.loss.ohem.min_kept) == (0.7, 100000)
    ccl = config.loss.ccl
    assert (ccl.dim, ccl.delta_v, ccl.delta_d, ccl.alpha, ccl.beta, ccl.gamma) == (16, 0.5, 1.5, 1, 1, 0.001)


def test_overrides_are_parsed_as_yaml_and_typed():
    config = load_config(
        None,
        [
            "optim.lr=1e-4",  # YAML 1.1 reads this as a string: accepted for a float field
            "train.max_iters=200",
            "data.crop_size=[769, 769]",
            "model.recurrence=1",
            "loss.ohem.enabled=true",
            "eval.scales=[0.75, 1, 1.25]",
            "data.options.length=64",
            "--train.seed=3",
            "model.backbone_weights=None",
        ],
    )
    assert config.optim.lr == 1e-4 and isinstance(config.optim.lr, float)
    assert config.train.max_iters == 200 and config.train.seed == 3
    assert config.data.crop_size == (769, 769)
    assert config.model.recurrence == 1 and config.loss.ohem.enabled is True
    assert config.eval.scales == (0.75, 1.0, 1.25)
    assert config.data.options == {"length": 64}
    assert config.model.backbone_weights is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=0.1", r"unknown config key 'optim.lrr'; valid keys in 'optim': name, lr, momentum"),
        ("trian.max_iters=3", r"unknown config key 'trian'; valid keys in the top level: name, model"),
        ("loss.ohem.tresh=0.5", r"unknown config key 'loss.ohem.tresh'"),
        ("train.max_iters=abc", r"train.max_iters: expected an integer, got 'abc'"),
        ("train.max_iters=1.5", r"train.max_iters: expected an integer"),
        ("loss.ohem.enabled=yes please", r"loss.ohem.enabled: expected true or false"),
        ("train.amp=fp8", r"train.amp: expected one of \['none', 'bf16', 'fp16'\], got 'fp8'"),
        ("data.crop_size=[1, 2, 3]", r"data.crop_size: expected"),
        ("optim.lr=fast", r"optim.lr: expected a number, got 'fast'"),
        ("optim=3", r"optim: expected a mapping"),
        ("justakey", r"expected key.sub=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_yaml_file_with_one_base(tmp_path: Path):
    (tmp_path / "base.yaml").write_text("optim:\n  lr: 0.5\n  momentum: 0.8\ntrain:\n  max_iters: 7\n")
    (tmp_path / "run.yaml").write_text("base: base.yaml\nname: run\noptim:\n  lr: 0.25\n")
    config = load_config(tmp_path / "run.yaml", ["train.max_iters=9"])
    assert config.name == "run"
    assert (config.optim.lr, config.optim.momentum) == (0.25, 0.8)  # file over base, base over defaults
    assert config.train.max_iters == 9  # command line over file


def test_only_one_level_of_base(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("name: a\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    (tmp_path / "c.yaml").write_text("base: b.yaml\n")
    with pytest.raises(ConfigError, match="only one level of 'base:'"):
        load_config(tmp_path / "c.yaml")


def test_file_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="neither a file nor a known config"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("train:\n  max_iters: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "typo.yaml").write_text("train:\n  max_iter: 5\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.max_iter'"):
        load_config(tmp_path / "typo.yaml")


@pytest.mark.parametrize("name", ["default", "video"])
def test_builtin_configs_equal_their_yaml_files(name):
    assert load_config(name) == load_config(CONFIG_DIR / f"{name}.yaml")
    assert load_config("default").model.name == "ccnet_tiny"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_configs_load_and_name_themselves(path: Path):
    config = load_config(path)
    assert config.name == path.stem
    assert config.train.max_iters >= 1000


def test_shipped_configs_cover_every_recipe_row():
    names = {p.stem for p in SHIPPED}
    for depth in (50, 101):
        for crop in ("512x1024", "769x769"):
            for iters in (40, 80):
                assert f"ccnet_r{depth}-d8_4xb2-{iters}k_cityscapes-{crop}" in names
        for iters in (80, 160):
            assert f"ccnet_r{depth}-d8_4xb4-{iters}k_ade20k-512x512" in names
        for iters in (20, 40):
            assert f"ccnet_r{depth}-d8_4xb4-{iters}k_voc12aug-512x512" in names
    authors = load_config("ccnet_r101-d8_authors-4xb2-60k_cityscapes-769x769-ohem")
    assert authors.loss.ohem.enabled and authors.model.recurrence == 2 and authors.data.augment == "authors"
    slide = load_config("ccnet_r50-d8_4xb2-80k_cityscapes-769x769")
    assert slide.eval.mode == "slide" and slide.eval.stride == (513, 513) and slide.model.align_corners


def test_saved_config_round_trips(tmp_path: Path):
    config = load_config("default", ["optim.lr=0.3", "data.crop_size=[32, 48]", "eval.scales=[0.5, 1.0]"])
    path = save_config(config, tmp_path / "run" / "config.yaml")
    assert load_config(path) == config
    assert config_to_dict(config)["data"]["crop_size"] == [32, 48]


# --- value ranges and dataset options -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.batch_size=0", "train.batch_size: expected an integer >= 1, got 0"),
        ("train.keep_last=-1", "train.keep_last: expected an integer >= 1, got -1"),
        ("train.checkpoint_interval=-3", "train.checkpoint_interval: expected an integer >= 0, got -3"),
        ("optim.lr=-1", "optim.lr: expected a number > 0, got -1.0"),
        ("optim.lr=.inf", "optim.lr: expected a number > 0, got inf"),
        ("optim.momentum=1", "optim.momentum: expected a number in [0, 1), got 1.0"),
        ("data.num_workers=-1", "data.num_workers: expected an integer >= 0, got -1"),
        ("data.crop_size=[512,0]", "data.crop_size[1]: expected an integer >= 1, got 0"),
        ("data.ratio_range=[2,1]", "data.ratio_range: expected [low, high] with low <= high"),
        ("eval.scales=[]", "eval.scales: expected at least one scale factor"),
        ("eval.scales=[0.5,0]", "eval.scales[1]: expected a number > 0, got 0.0"),
        ("loss.ignore_index=300", "loss.ignore_index: expected an integer in [0, 255], got 300"),
        ("train.device=gpu", "train.device: expected 'auto', 'cpu', 'cuda' or 'cuda:<index>', got 'gpu'"),
        ("data.dataset=''", "data.dataset: expected a non-empty string"),
    ],
)
def test_values_out_of_range_name_the_key(override, message):
    with pytest.raises(ConfigError) as error:
        load_config("default", [override])
    assert str(error.value).startswith(message), str(error.value)


def test_boundary_values_are_accepted():
    config = load_config(
        "default",
        ["train.val_interval=0", "train.checkpoint_interval=0", "data.num_workers=0", "train.device=cuda:1",
         "model.recurrence=0", "optim.momentum=0", "data.ratio_range=[1,1]"],
    )  # fmt: skip
    assert config.train.val_interval == 0 and config.model.recurrence == 0


def test_every_shipped_config_is_in_range():
    for path in SHIPPED:
        load_config(path)


def test_switching_dataset_on_the_command_line_drops_the_file_options():
    config = load_config("default", ["data.dataset=folder", "data.root=/data/mine"])
    assert config.data.options == {} and config.data.val_options == {}
    # options given with the switch are kept, in any order
    config = load_config("default", ["data.options.x=1", "data.dataset=folder"])
    assert config.data.options == {"x": 1}
    # the same dataset named again is no switch
    config = load_config("default", ["data.dataset=context", "data.options.image_size=32"])
    assert config.data.options == {"length": 12000, "image_size": 32}
    assert config.data.val_options == {"length": 256}


def test_options_given_whole_replace_the_file_options():
    config = load_config("default", ["data.options={}"])
    assert config.data.options == {} and config.data.val_options == {"length": 256}
    config = load_config("default", ["data.val_options={image_size: 32}"])
    assert config.data.val_options == {"image_size": 32} and config.data.options == {"length": 12000}


def test_a_file_switching_dataset_drops_the_base_options(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("data:\n  dataset: context\n  options: {length: 10}\n  num_workers: 0\n")
    child = tmp_path / "child.yaml"
    child.write_text("base: base.yaml\ndata:\n  dataset: folder\n  root: /data/mine\n")
    config = load_config(child)
    assert config.data.options == {} and config.data.num_workers == 0
