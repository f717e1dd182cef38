"""How every command gets its settings: the defaults of its settings dataclass < a ``--config`` YAML file <
its flags (those given) < ``KEY=VALUE`` overrides; ``--dry-run`` prints the resolved settings and stops.
Light: only argparse, yaml and ``apexgen.config`` are imported, so that a wrong setting is told at once."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from apexgen.config import load, load_yaml, to_dict
from apexgen.overrides import parse_overrides

T = TypeVar("T")


def add_config_arguments(parser: argparse.ArgumentParser, example: str) -> None:
    """``--config``, the ``KEY=VALUE`` overrides (``example``: a valid one for the help) and ``--dry-run``."""
    parser.add_argument("--config", type=Path, help="YAML file with settings (merged over the defaults)")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help=f"settings overriding the file, e.g. {example}"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the resolved settings and stop")


def resolve(cls: type[T], args: argparse.Namespace, *below: Mapping[str, Any], flags: bool = False) -> T:
    """``cls`` from its defaults < the ``below`` layers (a job's presets) < ``--config`` < with ``flags``, the
    flags that were given (every field of ``cls`` is the argparse destination of the same name; a path is
    given as text) < the overrides."""
    layers = list(below)
    if args.config:
        layers.append(load_yaml(args.config))
    names = [field.name for field in dataclasses.fields(cls)] if flags else []
    flag_layer, overrides = given_flags(args, names)
    layers.append(flag_layer)
    layers.append(parse_overrides([*overrides, *args.overrides]))
    return load(cls, *layers)


def given_flags(args: argparse.Namespace, flags: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The ``flags`` given on the command line, and the ``KEY=VALUE`` words a flag of several values took
    (argparse gives it every word up to the next flag). A flag left at None (or False, for a switch) is not
    in the layer, so that it does not hide a value of the ``--config`` file."""
    layer, overrides = {}, []
    for name in flags:
        value = getattr(args, name)
        if isinstance(value, list):
            value, taken = split_overrides(value)
            overrides += taken
        if value is None or value is False:
            continue
        layer[name] = str(value) if isinstance(value, Path) else value
    return layer, overrides


def split_overrides(words: list[Any]) -> tuple[list[Any], list[str]]:
    """``words`` without the ``KEY=VALUE`` overrides among them (a word with ``=`` that is not an existing
    path), and those overrides."""
    overrides = [str(word) for word in words if looks_like_override(word)]
    return [word for word in words if not looks_like_override(word)], overrides


def looks_like_override(word: Any) -> bool:
    return isinstance(word, (str, Path)) and "=" in str(word) and not Path(word).exists()


def print_settings(settings: Any) -> None:
    import yaml

    print(yaml.safe_dump(to_dict(settings), sort_keys=False))
