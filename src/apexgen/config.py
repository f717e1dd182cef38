"""Typed configuration: dataclasses filled strictly from YAML and ``key=value`` overrides.

An unknown key, a wrong type or a value outside a field's allowed set or range fails before any work
with a :class:`ConfigError` that names the full key and what is allowed. Dataclasses may define
``check(self)`` for range and cross-field rules, raising ``ConfigError`` with keys relative to itself;
a ``ValueError`` from a dataclass's own ``__post_init__`` is reported under the dataclass's key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem at ``key`` (a dotted path)."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"config key '{key}': {message}" if key else message)

    def __reduce__(self):  # picklable across worker processes
        return ConfigError, (self.key, self.message)

    def under(self, prefix: str) -> ConfigError:
        return ConfigError(join(prefix, self.key), self.message)


def join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix and key else prefix or key


def require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(key, message)


def require_non_negative(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        require(value >= 0, name, f"must be ≥ 0, got {value}")


def require_positive(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        require(value > 0, name, f"must be > 0, got {value}")


def require_fraction(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        require(0 <= value <= 1, name, f"must be in [0, 1], got {value}")


def build(cls: type[T], data: Mapping[str, Any] | None, prefix: str = "") -> T:
    """An instance of dataclass ``cls`` from ``data``, missing keys taking their defaults."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(prefix, f"expected a mapping of {cls.__name__} fields, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key, new in getattr(cls, "RENAMED_KEYS", {}).items():
        if key in data and (key not in fields or not old_shape_fits(hints[key], data[key])):
            raise ConfigError(join(prefix, key), f"renamed: use {join(prefix, new)}")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(join(prefix, str(unknown[0])), f"unknown key; allowed keys: {', '.join(fields)}")
    if "preset" in data and hasattr(cls, "presets"):
        data = merge(preset_layer(cls, data["preset"], data, prefix), data)
    values = {
        name: convert(hints[name], over_default(fields[name], value, join(prefix, name)), join(prefix, name))
        for name, value in data.items()
    }
    try:
        instance = cls(**values)
    except ConfigError as error:
        raise error.under(prefix) from None
    except ValueError as error:  # a dataclass validating itself in __post_init__
        raise ConfigError(prefix, str(error)) from None
    check = getattr(instance, "check", None)
    if check is not None:
        try:
            check()
        except ConfigError as error:
            raise error.under(prefix) from None
    return instance


def old_shape_fits(hint: Any, value: Any) -> bool:
    """Whether ``value`` can be meant for a field of type ``hint`` (a key reused under a new meaning, e.g. the
    toy's ``methods``, once a list of names, now the settings mapping, is refused only in its old shape)."""
    return isinstance(value, Mapping) or not dataclasses.is_dataclass(hint)


def over_default(field: dataclasses.Field, value: Any, key: str = "") -> Any:
    """A partial mapping for a nested dataclass field fills in from that field's own default instance,
    so ``teacher.steps=10`` keeps every other setting of the default ``teacher``; a mapping that names a
    ``preset`` fills in from that preset instead (``preset_layer``)."""
    if not isinstance(value, Mapping):
        return value
    if field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    else:
        default = field.default
    if not dataclasses.is_dataclass(default):
        return value
    return fill(type(default), to_dict(default), value, key)


def fill(cls: type, base: Mapping[str, Any], value: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``value`` deep-merged over ``base`` (the values of dataclass ``cls``); wherever ``value`` names a
    ``preset`` of a dataclass, that dataclass's values start from the preset instead of ``base``."""
    if "preset" in value and hasattr(cls, "presets"):
        base = preset_layer(cls, value["preset"], base, key)
    hints = typing.get_type_hints(cls)
    merged = dict(base)
    for name, item in value.items():
        nested = hints.get(name)
        if isinstance(item, Mapping) and dataclasses.is_dataclass(nested) and isinstance(base.get(name), Mapping):
            merged[name] = fill(nested, base[name], item, join(key, name))
        else:
            merged[name] = item
    return merged


def preset_layer(cls: type, name: Any, job: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The values of preset ``name`` of ``cls`` (its ``presets()``) over the class defaults, keeping the
    job's values of the fields the class names in ``JOB_FIELDS``; "" (no preset) keeps ``job`` as it is."""
    if name == "":
        return dict(job)
    presets = cls.presets()
    if name not in presets:
        allowed = ", ".join(repr(p) for p in presets) or "none"
        raise ConfigError(join(prefix, "preset"), f"unknown preset {name!r}; allowed presets: {allowed}")
    layer = merge(to_dict(cls()), presets[name])
    for field_name in getattr(cls, "JOB_FIELDS", ()):
        if field_name in job:
            layer[field_name] = job[field_name]
    layer["preset"] = name
    return layer


def convert(annotation: Any, value: Any, key: str) -> Any:
    """``value`` checked (and, for nested dataclasses and sequences, converted) against ``annotation``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        if value not in args:
            raise ConfigError(key, f"got {value!r}; allowed values: {', '.join(map(repr, args))}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return convert(option, value, key)
            except ConfigError as error:
                errors.append(error.message)
        raise ConfigError(key, " or ".join(errors))
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        return build(annotation, value, key)
    if origin in (list, tuple, Sequence) or annotation in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ConfigError(key, f"expected a list, got {value!r}")
        item_type = args[0] if args else Any
        items = [convert(item_type, item, f"{key}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if origin is tuple or annotation is tuple else items
    return convert_scalar(annotation, value, key)


def convert_scalar(annotation: Any, value: Any, key: str) -> Any:
    if annotation is Any:
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
        return value
    raise ConfigError(key, f"unsupported field type {annotation!r}")


def to_dict(instance: Any) -> Any:
    """A plain, YAML-ready view of a (nested) config dataclass."""
    if dataclasses.is_dataclass(instance):
        return {f.name: to_dict(getattr(instance, f.name)) for f in dataclasses.fields(instance) if f.init}
    if isinstance(instance, (list, tuple)):
        return [to_dict(item) for item in instance]
    return instance


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, anything else in ``override`` replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("", f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as error:
        raise ConfigError(
            "", f"config file {path} is not UTF-8 text ({not_utf8(path, error)}); save it as UTF-8"
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError("", f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(data, Mapping):
        raise ConfigError("", f"config file {path} must hold a mapping at the top level")
    return dict(data)


def not_utf8(path: Path, error: UnicodeDecodeError) -> str:
    """Where a file stops being UTF-8: the byte, its offset and its line."""
    line = path.read_bytes()[: error.start].count(b"\n") + 1
    return f"byte 0x{error.object[error.start]:02x} at offset {error.start}, line {line}"


def load(cls: type[T], *layers: Mapping[str, Any]) -> T:
    """Build ``cls`` from the deep merge of ``layers`` (defaults < preset < file < overrides)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = merge(merged, layer)
    return build(cls, merged)
