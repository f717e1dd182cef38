import subprocess
import sys

import pytest

from apexgen.config import ConfigError, build, load, load_yaml, to_dict
from apexgen.jobs.toy.config import ToyConfig
from apexgen.objectives.apex import APEXConfig
from apexgen.overrides import parse_overrides


def toy(*overrides: str) -> ToyConfig:
    return load(ToyConfig, parse_overrides(list(overrides)))


def test_defaults_round_trip_through_a_plain_dict():
    config = toy()
    assert build(ToyConfig, to_dict(config)) == config


def test_partial_nested_override_keeps_the_other_defaults():
    config = toy("teacher.steps=10")
    assert config.teacher.steps == 10
    assert config.teacher.batch_size == ToyConfig().teacher.batch_size
    assert config.teacher.optimizer == ToyConfig().teacher.optimizer


def test_override_values_are_parsed_as_yaml_and_numbers():
    config = toy(
        "student.optimizer.lr=3e-4", "methods.apex.condition_shift.a=-1", "seeds=[4, 5]", "methods.apex.loss=barron"
    )
    assert config.student.optimizer.lr == 3e-4
    assert config.methods.apex.condition_shift.a == -1.0
    assert config.seeds == (4, 5)
    assert config.methods.apex.loss == "barron"


@pytest.mark.parametrize(
    ("override", "key", "hint"),
    [
        ("methods.apex.shfit.a=1", "methods.apex.shfit", "allowed keys: preset, condition_shift, fake_key"),
        ("methods.apex.shift.a=1", "methods.apex.shift", "renamed: use methods.apex.condition_shift"),
        ("student.steps=many", "student.steps", "expected an integer"),
        ("student.steps=2.5", "student.steps", "expected an integer"),
        ("methods.apex.clamp=yes", "methods.apex.clamp", "expected a number"),
        ("methods.apex.loss=l1", "methods.apex.loss", "allowed values: 'mse', 'barron'"),
        (
            "methods.apex.condition_shift.where=tokens",
            "methods.apex.condition_shift.where",
            "allowed values: 'projected', 'embeds'",
        ),
        ("methods.apex.weight_fake=-1", "methods.apex.weight_fake", "must be ≥ 0"),
        ("methods.dmd2.weight_gan_generator=-0.1", "methods.dmd2.weight_gan_generator", "must be ≥ 0"),
        ("methods.apex.slices.fake=0.75", "methods.apex.slices", "must sum to 1"),
        ("methods.apex.mix_lambda=2", "methods.apex.mix_lambda", "must be in [0, 1]"),
        ("methods.apex.generator_form=mix", "methods.apex.slices.generator", "set slices.generator=0"),
        ("student.batch_size=1", "student.batch_size", "at least 2 rows"),
        ("students=[apex, gan]", "students[1]", "allowed: apex, twinflow"),
        ("methods=[apex, dmd2]", "methods", "renamed: use students"),
        ("method.apex.loss=mse", "method", "renamed: use methods"),
        ("datasets=[moons]", "datasets[0]", "allowed: ring, orbit"),
        ("student.optimizer.betas=[0.9]", "student.optimizer.betas", "two numbers"),
        ("teacher.steps=0", "teacher.steps", "must be > 0"),
        ("student.optimizer.lr=inf", "student.optimizer.lr", "must be a finite number, got inf"),
        ("student.optimizer.grad_clip=.inf", "student.optimizer.grad_clip", "must be a finite number"),
    ],
)
def test_bad_values_fail_naming_the_key_and_what_is_allowed(override, key, hint):
    with pytest.raises(ConfigError) as error:
        toy(override)
    assert error.value.key == key
    assert hint in str(error.value)


def test_dataclass_validation_applies_to_programmatic_construction_too():
    with pytest.raises(ConfigError, match="slices.generator"):
        build(APEXConfig, {"generator_form": "mix"})


def test_cli_rejects_a_bad_config_before_any_work(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "apexgen.cli", "toy", "--out", str(tmp_path / "out"), "methods.apex.slices.fake=0.9"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "methods.apex.slices" in result.stderr and "must sum to 1" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_config_file_that_is_not_utf8_names_the_byte_and_the_fix(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_bytes("student:\n  steps: 4  # réglage\n".encode("latin-1"))
    with pytest.raises(
        ConfigError, match=r"settings.yaml is not UTF-8 text \(byte 0xe9 at offset 24, line 2\); save it"
    ):
        load_yaml(path)
