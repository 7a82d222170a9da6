"""Frozen dataclass configs with YAML overrides that reject unknown keys.

Defaults live in the dataclasses (the paper's main setting); a YAML file under ``experiments/``
holds only overrides. Nested dataclasses are addressed as nested mappings. No Hydra, no
``_target_`` strings: an unknown key is an error that lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

ConfigT = TypeVar("ConfigT")


class ConfigError(ValueError):
    """A config file or override does not match the dataclass it configures."""


def from_dict(config_class: type[ConfigT], values: Mapping[str, Any], *, where: str = "",
              base: ConfigT | None = None) -> ConfigT:
    """Build ``config_class`` from ``base`` (default: its defaults) updated by ``values``.

    A nested mapping updates the nested config *as the parent's default has it* (a field whose
    default is ``Stage(epochs=6)`` keeps ``epochs=6`` unless the YAML overrides it).
    """
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where or config_class.__name__}: expected a mapping, got {type(values).__name__}")
    fields = {field.name: field for field in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where or config_class.__name__}: unknown key(s) {unknown}; valid keys: {sorted(fields)}"
        )
    hints = typing.get_type_hints(config_class)
    base = config_class() if base is None else base
    kwargs = {}
    for name, value in values.items():
        current = getattr(base, name)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            kwargs[name] = from_dict(type(current), value, where=f"{where}{name}.", base=current)
        else:
            kwargs[name] = _coerce(hints[name], value, where=f"{where}{name}")
    return dataclasses.replace(base, **kwargs)


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file; a missing file, a syntax error or a non-mapping is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    loaded = {} if loaded is None else loaded
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
    return loaded


def load_config(config_class: type[ConfigT], path: str | Path | None = None, **overrides: Any) -> ConfigT:
    """Load a YAML file of overrides (optional) and keyword overrides onto ``config_class``.

    A top-level ``kind:`` line (the experiment registry's key, :mod:`mmq.registry`) is not a field.
    """
    values: dict[str, Any] = {}
    if path is not None:
        values.update(read_yaml_mapping(path))
        values.pop("kind", None)
    values.update(overrides)
    try:
        return from_dict(config_class, values)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}" if path else str(error)) from None


def to_dict(config: Any) -> dict[str, Any]:
    """Resolved config as plain JSON-friendly data (tuples become lists)."""
    return _plain(dataclasses.asdict(config))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _coerce(hint: Any, value: Any, *, where: str) -> Any:
    """Check and convert one YAML value to the annotated field type."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where=f"{where}.")
    if origin in (typing.Union, types.UnionType):
        arguments = typing.get_args(hint)
        if value is None and type(None) in arguments:
            return None
        errors = []
        for argument in arguments:
            if argument is type(None):
                continue
            try:
                return _coerce(argument, value, where=where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError("; ".join(errors))
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        arguments = typing.get_args(hint)
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return tuple(_coerce(arguments[0], item, where=f"{where}[{index}]") for index, item in enumerate(value))
        if len(arguments) != len(value):
            raise ConfigError(f"{where}: expected {len(arguments)} items, got {len(value)}")
        return tuple(_coerce(argument, item, where=f"{where}[{index}]") for index, (argument, item) in enumerate(zip(arguments, value)))
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported config type {hint!r}")
