"""Every command's settings: defaults < --config file < the flags given < KEY=VALUE overrides."""

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from apexgen.config import ConfigError
from apexgen.settings_layers import add_config_arguments, resolve, split_overrides


@dataclass(frozen=True)
class Settings:
    name: str = "default"
    steps: int = 1
    lora: bool = False
    methods: list[str] | None = None


def arguments(*words: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", type=Path)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--methods", nargs="+")
    add_config_arguments(parser, "steps=2")
    return parser.parse_args(list(words))


def test_each_layer_overrides_the_one_below(tmp_path):
    (tmp_path / "a.yaml").write_text("name: file\nsteps: 5\nlora: true\n")
    assert resolve(Settings, arguments(), flags=True) == Settings()
    from_file = resolve(Settings, arguments("--config", str(tmp_path / "a.yaml")), flags=True)
    assert from_file == Settings("file", 5, True)
    flags = arguments("--config", str(tmp_path / "a.yaml"), "--steps", "7", "--name", "flag")
    assert resolve(Settings, flags, flags=True) == Settings("flag", 7, True)
    overridden = arguments("--config", str(tmp_path / "a.yaml"), "--steps", "7", "steps=9")
    assert resolve(Settings, overridden, flags=True) == Settings("file", 9, True)


def test_a_switch_left_off_does_not_hide_the_files_value(tmp_path):
    (tmp_path / "a.yaml").write_text("lora: true\n")
    assert resolve(Settings, arguments("--config", str(tmp_path / "a.yaml")), flags=True).lora is True


def test_overrides_taken_by_a_flag_of_several_values_are_overrides(tmp_path):
    settings = resolve(Settings, arguments("--methods", "apex", "steps=3", "dmd2"), flags=True)
    assert settings == Settings(steps=3, methods=["apex", "dmd2"])
    (tmp_path / "a=b").mkdir()
    assert split_overrides([tmp_path / "a=b", Path("c=d")]) == ([tmp_path / "a=b"], ["c=d"])


def test_a_wrong_value_from_any_layer_names_its_key(tmp_path):
    with pytest.raises(ConfigError, match="config key 'steps': expected an integer"):
        resolve(Settings, arguments("steps=many"), flags=True)
    (tmp_path / "a.yaml").write_text("stepz: 3\n")
    with pytest.raises(ConfigError, match="config key 'stepz': unknown key"):
        resolve(Settings, arguments("--config", str(tmp_path / "a.yaml")), flags=True)
