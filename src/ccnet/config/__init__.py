"""Run configuration: the schema (:mod:`ccnet.config.schema`, defaults = the paper's recipe), reading YAML
files and overrides (:mod:`ccnet.config.load`), and the configs shipped with the package
(``ccnet/config/recipes``, listed by ``ccnet train --list``)."""

from ccnet.config.load import (
    CONFIG_DIR,
    DEFAULT_CONFIG,
    config_description,
    config_from_dict,
    config_to_dict,
    list_configs,
    load_config,
    parse_override,
    resolve_config_path,
    save_config,
    split_config_items,
)
from ccnet.config.schema import (
    CategoryConsistentConfig,
    Config,
    ConfigError,
    DataConfig,
    EvalConfig,
    LossConfig,
    ModelConfig,
    OhemConfig,
    OptimConfig,
    TrainConfig,
    validate_config,
)

__all__ = [
    "CONFIG_DIR",
    "DEFAULT_CONFIG",
    "CategoryConsistentConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "ModelConfig",
    "OhemConfig",
    "OptimConfig",
    "TrainConfig",
    "config_description",
    "config_from_dict",
    "config_to_dict",
    "list_configs",
    "load_config",
    "parse_override",
    "resolve_config_path",
    "save_config",
    "split_config_items",
    "validate_config",
]
