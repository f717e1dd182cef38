"""The recipes in configs/ load through the same config code as the command line, and ``--dry-run`` prints
the resolved settings and the memory estimate; the rules a run's settings must satisfy."""

from pathlib import Path

import pytest

from apexgen.cli import main
from apexgen.config import ConfigError, load, load_yaml
from apexgen.jobs.real_backbones.config import RunConfig
from apexgen.overrides import parse_overrides

RECIPES = sorted((Path(__file__).parents[3] / "configs").glob("*.yaml"))
REQUIRED = {"model": {"backbone": "sd3", "path": "some/model"}, "data": {"path": "/data/images"}}


def settings(*overrides: str) -> RunConfig:
    return load(RunConfig, REQUIRED, parse_overrides(overrides))


def test_every_backbone_has_a_recipe():
    assert {path.name for path in RECIPES} == {
        "qwen_image_lora.yaml",
        "sana_full.yaml",
        "sd35_lora.yaml",
        "flux_lora.yaml",
        "z_image_lora.yaml",
    }


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.stem)
def test_recipe_is_valid_and_dry_runs(recipe, capsys):
    config = load(RunConfig, load_yaml(recipe))
    assert config.method == "apex" and config.train.optimizer.betas == (0.9, 0.99)
    assert config.train.optimizer.grad_clip == 1.0 and config.train.precision == "bf16"
    assert main(["train", "--config", str(recipe), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert f"backbone: {config.model.backbone}" in printed
    assert "memory estimate unavailable" in printed and "set model.path to a local pipeline folder" in printed


def test_the_qwen_image_recipe_is_the_released_one():
    config = load(RunConfig, load_yaml(RECIPES[[p.name for p in RECIPES].index("qwen_image_lora.yaml")]))
    assert (config.model.lora.rank, config.model.lora.alpha, config.model.full_finetune) == (64, 64.0, False)
    assert config.train.optimizer.lr == 1e-4 and config.data.resolution == 512


def test_dry_run_on_a_model_folder_prints_the_estimate(tmp_path, models, capsys):
    overrides = [f"model.path={models('qwen_image')}", "model.backbone=qwen_image", "model.lora.rank=4"]
    recipe = RECIPES[[p.name for p in RECIPES].index("qwen_image_lora.yaml")]
    assert main(["train", "--config", str(recipe), *overrides, f"out={tmp_path / 'run'}", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "## Memory estimate per process: apex, LoRA rank 4" in printed
    assert "| dmd2 | 1 base, 2 adapters |" in printed
    assert "Estimate of weights, gradients and AdamW states only" in printed
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "overrides, key, words",
    [
        (["model.fsdp=true"], "model.fsdp", "set model.full_finetune=true, or model.fsdp=false for LoRA"),
        (["model.fsdp=true", "model.full_finetune=true", "method=dmd2", "methods.dmd2.weight_gan_generator=0.1"],
         "methods.dmd2.weight_gan_generator", "set it to 0, or model.fsdp=false"),
        (["method=gan"], "method", "allowed: apex, twinflow, dmd2, consistency, regression"),
        (["model.dtype=bf16", "train.precision=fp32"], "train.precision", "set train.precision=bf16"),
        (["method=dmd2", "model.gradient_checkpointing=true"], "model.gradient_checkpointing", "wrong gradients"),
        (["data.kind=prompts", "methods.apex.slices.anchor=0.5", "methods.apex.slices.fake=0.5",
          "methods.apex.generator_form=mix", "methods.apex.slices.generator=0"],
         "methods.apex.slices.anchor", "set it to 0"),
        (["data.kind=prompts", "method=consistency"], "method", "need only prompts"),
        (["data.kind=prompts", "method=dmd2", "methods.dmd2.weight_gan_generator=0.1"],
         "methods.dmd2.weight_gan_generator", "set it to 0"),
        (["samples.steps=[3]"], "samples.steps", "previews sample with (1, 2, 4) steps"),
        (["data.kind=prompts", "methods.apex.preset=paper"], "methods.apex.preset", "choose preset=ours"),
        (["model.fsdp=true", "model.full_finetune=true", "methods.apex.lag_every=10"], "methods.apex.lag_every",
         "set it to 0, or model.fsdp=false"),
        (["methods.apex.fake_network=private", "methods.apex.fake_updates=2", "methods.apex.slices.fake=0",
          "methods.apex.slices.generator=1", "model.gradient_checkpointing=true"],
         "model.gradient_checkpointing", "wrong gradients"),
    ],
)  # fmt: skip
def test_settings_that_cannot_work_name_the_key_and_the_fix(overrides, key, words):
    with pytest.raises(ConfigError) as error:
        settings(*overrides)
    assert error.value.key == key and words in error.value.message


def test_settings_that_work():
    settings("data.kind=prompts")  # APEX's default rows need no images
    settings("data.kind=prompts", "method=dmd2")
    settings("method=dmd2", "model.gradient_checkpointing=true", "model.full_finetune=true")
    settings("method=regression")
    settings("method=regression", "model.backbone=sana")  # masked prompt embeddings are padded when joined
