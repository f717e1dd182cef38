"""The settings of export, sample, generate and bench: what each requires and refuses, and the same
command given by flags, by a --config file or by KEY=VALUE overrides (``--dry-run`` prints it)."""

import dataclasses

import pytest
import yaml

from apexgen.cli import build_parser, main
from apexgen.config import ConfigError, load
from apexgen.jobs.real_backbones.bench_commands import BenchCommandSettings
from apexgen.jobs.real_backbones.command_settings import (
    ExportCommandSettings,
    GenerateCommandSettings,
    SampleCommandSettings,
)


@pytest.mark.parametrize(
    ("cls", "values", "message"),
    [
        (ExportCommandSettings, {}, "config key 'run': required: the out folder of apexgen train; give --run"),
        (SampleCommandSettings, {"lora": "l", "prompt": "p"}, "give exactly one of --model"),
        (SampleCommandSettings, {"model": "m", "teacher": "", "lora": "l", "prompt": "p"}, "exactly one of --model"),
        (SampleCommandSettings, {"model": "m", "prompt": "p"}, "config key 'lora': required: an apexgen export"),
        (SampleCommandSettings, {"model": "m", "lora": "l"}, "config key 'prompt': required"),
        (SampleCommandSettings, {"model": "m", "lora": "l", "prompt": "p", "images": 0}, "'images': must be ≥ 1"),
        (SampleCommandSettings, {"teacher": "", "lora": "l", "prompt": "p", "dtype": "bf16"}, "apply to --model"),
        (GenerateCommandSettings, {"lora": "l", "prompts": "p", "out": "o"}, "config key 'model': required"),
        (
            GenerateCommandSettings,
            {"model": "m", "lora": "l", "prompts": "p", "out": "o", "seeds": [1], "seed": 2},
            "--seed is the first seed of --images; with --seeds",
        ),
        (
            GenerateCommandSettings,
            {"model": "m", "lora": "l", "prompts": "p", "out": "o", "seeds": [1], "images": 2},
            "give one of the two",
        ),
        (BenchCommandSettings, {}, "config key 'backbone': required: one of sd3, flux"),
        (BenchCommandSettings, {"backbone": "sd3", "inference": True}, "--inference needs --model"),
        (BenchCommandSettings, {"backbone": "sd3", "repeats": 2}, "--repeats: only for --inference"),
        (
            BenchCommandSettings,
            {"backbone": "sd3", "inference": True, "model": "m", "lora": True, "steps": 2},
            "--lora, --steps: only for the training bench",
        ),
    ],
)
def test_what_each_command_requires_and_refuses(cls, values, message):
    with pytest.raises(ConfigError) as error:
        load(cls, values)
    assert message in str(error.value)


def test_generate_seeds_from_images_or_a_list():
    required = {"model": "m", "lora": "l", "prompts": "p", "out": "o"}
    assert load(GenerateCommandSettings, required).seed_list() == [0, 1, 2, 3]
    assert load(GenerateCommandSettings, required | {"images": 2, "seed": 5}).seed_list() == [5, 6]
    assert load(GenerateCommandSettings, required | {"seeds": [9, 3]}).seed_list() == [9, 3]


def dry_run(capsys, *words: str) -> dict:
    assert main([*words, "--dry-run"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_a_sample_command_by_flags_by_file_and_by_overrides_is_the_same(tmp_path, capsys):
    flags = dry_run(capsys, "sample", "--model", "m", "--lora", "l", "--prompt", "a cat", "--steps", "2")
    (tmp_path / "sample.yaml").write_text("model: m\nlora: l\nprompt: a cat\nsteps: 2\n")
    assert dry_run(capsys, "sample", "--config", str(tmp_path / "sample.yaml")) == flags
    assert dry_run(capsys, "sample", "model=m", "lora=l", "prompt=a cat", "steps=2") == flags
    assert flags["steps"] == 2 and flags["out"] == "sample.png" and flags["seed"] == 0


def test_the_shipped_teacher_flag_before_an_override(capsys):
    settings = dry_run(capsys, "sample", "--teacher", "steps=2", "--lora", "l", "--prompt", "a cat")
    assert settings["teacher"] == "" and settings["steps"] == 2


def test_bench_and_export_by_overrides(capsys):
    bench = dry_run(capsys, "bench", "--methods", "apex", "dmd2", "backbone=sd3", "steps=3")
    assert bench["methods"] == ["apex", "dmd2"] and bench["steps"] == 3 and bench["backbone"] == "sd3"
    assert dry_run(capsys, "export", "run=runs/a") == {"run": "runs/a", "out": None}


def test_overrides_after_the_seeds_of_generate_are_overrides_and_a_bad_seed_is_named(capsys):
    words = ["generate", "--model", "m", "--lora", "l", "--prompts", "p.jsonl", "--seeds", "3", "1"]
    settings = dry_run(capsys, *words, "out=images", "steps=2")
    assert settings["seeds"] == [3, 1] and settings["out"] == "images" and settings["steps"] == 2
    with pytest.raises(SystemExit):
        main([*words, "x", "--out", "o", "--dry-run"])
    assert "argument --seeds: not a seed (an integer): 'x'" in capsys.readouterr().err


def test_a_required_setting_missing_from_every_layer_exits_2(caplog):
    assert main(["generate", "--model", "m", "--lora", "l", "--prompts", "p.jsonl"]) == 2
    assert "config key 'out': required: the images folder; give --out or out=..." in caplog.text


@pytest.mark.parametrize(
    ("command", "cls"),
    [
        ("export", ExportCommandSettings),
        ("sample", SampleCommandSettings),
        ("generate", GenerateCommandSettings),
        ("bench", BenchCommandSettings),
    ],
)
def test_every_setting_is_a_flag_of_its_command(command, cls):
    """``resolve(..., flags=True)`` reads each field from the argparse destination of the same name."""
    args = build_parser().parse_args([command])
    assert {field.name for field in dataclasses.fields(cls)} <= set(vars(args))
