"""Reading run configurations: YAML files (or the configs shipped in ``ccnet/config/recipes``) and
``key.sub=value`` overrides, checked against the schema of :mod:`ccnet.config.schema`.

A config is resolved in three layers, each checked against the dataclass fields (an unknown key or a value
of the wrong type raises :class:`ConfigError` naming the dotted key and what is allowed):

1. the dataclass defaults (``Config()``): CCNet R-50-D8, SGD lr 0.01 / momentum 0.9 / wd 5e-4, poly 0.9 to
   1e-4, CE + 0.4 x aux, 40k iterations of batch 8;
2. a YAML file, given as a path or as the name of a config shipped in the package (``ccnet train --list``;
   ``default`` is what a bare ``ccnet train`` runs), which may name at most one ``base:`` file (a path
   relative to itself, without a base of its own) whose values it overrides;
3. ``a.b=value`` overrides, each value parsed with ``yaml.safe_load`` (``true``, ``0.5``, ``[769, 769]``,
   ``null``).

Sections (``optim``, ``data``, ...) merge key by key across the layers. Two exceptions keep a run from
inheriting dataset options that belong to another dataset: the free-form mappings ``data.options`` and
``data.val_options`` are replaced, not merged, by an override that gives them whole (``data.options={}``
clears them), and a layer that switches ``data.dataset`` to another dataset drops the options of the layers
below it. Finally every value is checked against its range (:func:`ccnet.config.schema.validate_config`).

Floats also accept strings such as ``1e-4`` (YAML 1.1 reads a float without a dot as a string), ints are
accepted where floats are expected, and YAML lists where tuples are expected.

>>> config = load_config(None, ["optim.lr=0.02", "train.max_iters=100"])
>>> config.optim.lr, config.train.max_iters
(0.02, 100)
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from ccnet.config.schema import Config, ConfigError, DataConfig, validate_config

__all__ = [
    "CONFIG_DIR",
    "DEFAULT_CONFIG",
    "config_description",
    "config_from_dict",
    "config_to_dict",
    "list_configs",
    "load_config",
    "parse_override",
    "resolve_config_path",
    "save_config",
    "split_config_items",
]

# The recipes shipped inside the package (``ccnet train --list``): the built-in runs ``default`` (what a bare
# ``ccnet train`` runs) and ``video``, and the published recipes, with the ``_base/`` files they build on.
CONFIG_DIR = Path(str(importlib.resources.files("ccnet.config").joinpath("recipes")))
DEFAULT_CONFIG = "default"


def list_configs() -> list[str]:
    """Sorted names of the shipped configs (``default``, ``video`` and every recipe)."""
    return sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))


def config_description(name: str) -> str:
    """The first sentence of a shipped config's leading comment: what it runs."""
    lines = []
    for line in (CONFIG_DIR / f"{name}.yaml").read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    text = " ".join(lines)
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


# --- checking values against field types -------------------------------------------------------------
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", None) if origin is None else str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against (and normalised to) type ``tp``; ConfigError naming ``key`` otherwise."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        # "None" from a command line means null too (YAML reads only null / ~ as None)
        if type(None) in args and (value is None or value in ("None", "none")):
            return None
        for arm in args:
            if arm is type(None):
                continue
            try:
                return _coerce(value, arm, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list ({_type_name(tp)}), got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values ({_type_name(tp)}), got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{key}.{k}") if args else v for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # "1e-4": YAML 1.1 reads floats without a dot as strings
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{key}: unsupported field type {tp!r}")  # a bug in the dataclasses above


def _build(cls: type, values: Mapping[str, Any], prefix: str = "") -> Any:
    """Instantiate dataclass ``cls`` from a (partial) mapping, checking every key and value."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else str(key)
            section = f"'{prefix}'" if prefix else "the top level"
            raise ConfigError(f"unknown config key '{where}'; valid keys in {section}: {', '.join(names)}")
    kwargs = {}
    for name in names:
        if name in values:
            kwargs[name] = _coerce(values[name], hints[name], f"{prefix}.{name}" if prefix else name)
    return cls(**kwargs)


def config_from_dict(values: Mapping[str, Any]) -> Config:
    """A :class:`Config` from a nested mapping (missing keys keep their defaults), its values checked
    against their types and ranges."""
    return validate_config(_build(Config, values))


def config_to_dict(config: Config) -> dict[str, Any]:
    """Nested plain dict (tuples as lists), suitable for YAML and ``torch.save``."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))


# --- files and overrides -----------------------------------------------------------------------------
def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict update (mappings merged key by key, anything else replaced)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# Free-form per-dataset keyword arguments: meaningful only for the dataset they were written for.
_DATASET_OPTIONS = ("options", "val_options")


def _dataset_of(values: Mapping[str, Any]) -> Any:
    data = values.get("data")
    return data.get("dataset") if isinstance(data, Mapping) else None


def _merge_layer(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` (a config layer) over ``base``; a layer that names another dataset than ``base`` (or the
    schema default) does not inherit the dataset options of ``base``."""
    new_dataset = _dataset_of(update)
    old_dataset = _dataset_of(base) or DataConfig.dataset
    if new_dataset is not None and new_dataset != old_dataset and isinstance(base.get("data"), Mapping):
        base = {**base, "data": {k: v for k, v in base["data"].items() if k not in _DATASET_OPTIONS}}
    return _merge(base, update)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path}: expected a mapping at the top level, got {type(data).__name__}"
        )
    return data


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A config file: a path, or the name of a shipped config (``ccnet train --list``), with or without
    ``.yaml``."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.parent == Path("."):
        for candidate in (CONFIG_DIR / path.name, CONFIG_DIR / f"{path.name}.yaml"):
            if candidate.is_file():
                return candidate
    raise ConfigError(
        f"config {str(name_or_path)!r} is neither a file nor a known config; shipped configs: "
        f"{list_configs()}"
    )


def _load_layers(source: str | Path | Mapping[str, Any] | None) -> dict[str, Any]:
    """The merged mapping of a config file (with its ``base:``) or a built-in config; {} for None."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return dict(source)
    resolved = resolve_config_path(source)
    data = _read_yaml(resolved)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{resolved}: 'base' must be a file path, got {base!r}")
    base_path = (resolved.parent / base).resolve()
    base_data = _read_yaml(base_path)
    if "base" in base_data:
        raise ConfigError(
            f"{resolved}: its base {base_path} has a base of its own; only one level of 'base:' is allowed"
        )
    return _merge_layer(base_data, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=0.02"`` -> (``["optim", "lr"]``, ``0.02``); the value is read with ``yaml.safe_load``."""
    key, sep, raw = text.partition("=")
    key = key.strip().removeprefix("--")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: expected key.sub=value (e.g. optim.lr=0.02)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: the value is not valid YAML: {err}") from err
    return key.split("."), value


def split_config_items(items: Sequence[str]) -> tuple[str | None, list[str]]:
    """Command-line items -> (config file or name, overrides): items with ``=`` are overrides, at most one
    other item is the config.

    Raises:
        ConfigError: more than one config given.
    """
    overrides = [item for item in items if "=" in item]
    sources = [item for item in items if "=" not in item]
    if len(sources) > 1:
        raise ConfigError(f"more than one config given: {sources} (overrides need key=value)")
    return (sources[0] if sources else None), overrides


def load_config(
    source: str | Path | Mapping[str, Any] | None = None, overrides: Sequence[str] = ()
) -> Config:
    """Dataclass defaults <- ``source`` <- ``a.b=value`` overrides.

    ``source``: a config file, a config name (see :func:`resolve_config_path`), a nested mapping of values,
    or None (the dataclass defaults).

    Raises:
        ConfigError: missing or invalid file, more than one level of ``base:``, an unknown key or a value
            of the wrong type (the message names the dotted key).
    """
    values = _load_layers(source)
    # The overrides form one layer: `data.dataset=folder data.options.x=1` keeps x and drops the file's.
    layer: dict[str, Any] = {}
    for text in overrides:
        path, value = parse_override(text)
        if len(path) == 2 and path[0] == "data" and path[1] in _DATASET_OPTIONS:
            # given whole, a free-form mapping is replaced: `data.options={}` clears the file's options
            values = _without(values, path)
            layer = _without(layer, path)
        update: Any = value
        for part in reversed(path):
            update = {part: update}
        layer = _merge(layer, update)
    return config_from_dict(_merge_layer(values, layer))


def _without(values: dict[str, Any], path: list[str]) -> dict[str, Any]:
    """A copy of ``values`` without the nested key ``path`` (two levels)."""
    section = values.get(path[0])
    if not isinstance(section, Mapping) or path[1] not in section:
        return values
    return {**values, path[0]: {k: v for k, v in section.items() if k != path[1]}}


def save_config(config: Config, path: str | Path) -> Path:
    """Write the resolved config as YAML (loadable again with :func:`load_config`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    return path
