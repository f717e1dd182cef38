"""The ``KEY=VALUE`` overrides of every command: dotted keys into nested settings, values parsed as YAML,
and an override that sets a key and another that sets settings inside it refused (``apexgen.config``
merges them over the defaults, a preset and a ``--config`` file)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from apexgen.config import ConfigError, merge


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[1, 2]"]`` → ``{"a": {"b": 1}, "c": [1, 2]}`` (values parsed as YAML). A key given a
    value by one override and settings below it by another (``a=3 a.b=4``) is refused, whichever comes first."""
    nested: dict[str, Any] = {}
    given: dict[str, str] = {}  # dotted key → the override that set it
    for item in overrides:
        key, separator, text = item.partition("=")
        if not separator or not key:
            raise ConfigError(item, "an override must look like key=value, e.g. apex.condition_shift.a=-1")
        node = nested
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1], start=1):
            node = node.setdefault(part, {})
            if not isinstance(node, Mapping):
                raise conflicting_overrides(".".join(parts[:depth]), given, item)
        value = parse_value(text)
        if isinstance(node.get(parts[-1]), Mapping):
            if not isinstance(value, Mapping):
                raise conflicting_overrides(key, given, item)
            value = merge(node[parts[-1]], value)
        node[parts[-1]] = value
        given.setdefault(key, item)
    return nested


def conflicting_overrides(key: str, given: dict[str, str], item: str) -> ConfigError:
    """``key`` is set as a value by one override and as a section of settings by ``item`` (or the reverse)."""

    def overlaps(name: str) -> bool:  # the same key, one inside it or one around it
        return f"{name}.".startswith(f"{key}.") or f"{key}.".startswith(f"{name}.")

    earlier = next(other for name, other in given.items() if overlaps(name))
    return ConfigError(
        key,
        f"the overrides {earlier} and {item} conflict: one gives '{key}' a value, the other settings inside it; "
        "keep one of the two",
    )


def parse_value(text: str) -> Any:
    """YAML, except that numbers YAML 1.1 reads as strings (``3e-4``) are numbers."""
    value = yaml.safe_load(text) if text else ""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value
