"""The dry-run estimate counts what the networks of a run really hold: its parameter counts equal those of
the networks built for training (tiny models), and its copies follow each method's layout."""

import math

import pytest

from apexgen.backbones.registry import adapter_class
from apexgen.config import load
from apexgen.jobs.real_backbones.config import RunConfig
from apexgen.jobs.real_backbones.estimate import (
    FP32,
    TRAINABLE,
    estimate,
    every_method,
    format_estimate,
    meta_transformer,
)
from apexgen.jobs.real_backbones.networks import prepare_student
from apexgen.objectives import MethodsConfig, build_objective
from apexgen.overrides import parse_overrides
from tests.backbones.tiny import NAMES


def settings(name: str, folder, *overrides: str) -> RunConfig:
    required = {"model": {"backbone": name, "path": str(folder), "dtype": "bf16"}, "data": {"path": "x"}}
    return load(RunConfig, required, parse_overrides(["model.lora.rank=4", *overrides]))


def trained_networks(config: RunConfig):
    """The networks ``apexgen train`` builds (on real weights) and their trainable parameter count."""
    adapter = adapter_class(config.model.backbone).from_pretrained(str(config.model.path))
    networks = prepare_student(config, adapter)
    objective = build_objective(config.method, MethodsConfig(), networks.student, networks.teacher, networks.fake)
    unique = {id(p): p for group in objective.parameter_groups().values() for p in group}
    return adapter, sum(p.numel() for p in unique.values())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("method", ["apex", "dmd2"])
def test_lora_counts_equal_the_built_networks(models, name, method):
    config = settings(name, models(name), f"method={method}")
    result = estimate(config, meta_transformer(name, str(models(name))))
    adapter, trainable = trained_networks(config)
    assert result.transformer_parameters == sum(
        p.numel() for n, p in adapter.transformer.named_parameters() if "lora_" not in n
    )
    assert result.trainable_parameters == trainable
    assert result.rows[0].bytes_per_parameter == 2  # the frozen bf16 base


@pytest.mark.parametrize("method", ["apex", "dmd2", "consistency"])
def test_full_fine_tuning_counts_equal_the_built_networks(models, method):
    config = settings("sd3", models("sd3"), f"method={method}", "model.full_finetune=true")
    result = estimate(config, meta_transformer("sd3", str(models("sd3"))))
    _, trainable = trained_networks(config)
    assert result.trainable_parameters == trainable
    total = result.transformer_parameters
    copies = {"apex": TRAINABLE * total + 2 * total, "dmd2": 2 * TRAINABLE * total + 2 * total}
    copies["consistency"] = TRAINABLE * total + 2 * total + FP32 * total
    assert result.total_bytes == copies[method]


def test_every_method_in_lora_form(models):
    config = settings("qwen_image", models("qwen_image"))
    results = {r.method: r for r in every_method(config, meta_transformer("qwen_image", str(models("qwen_image"))))}
    lora = results["apex"].trainable_parameters
    assert results["twinflow"].total_bytes == results["apex"].total_bytes
    assert results["dmd2"].trainable_parameters == 2 * lora and results["dmd2"].network_copies == "1 base, 2 adapters"
    base = results["apex"].transformer_parameters
    assert results["consistency"].total_bytes == results["apex"].total_bytes + 2 * base + FP32 * lora


def test_settings_that_add_memory(models):
    transformer = meta_transformer("sd3", str(models("sd3")))
    plain = estimate(settings("sd3", models("sd3"), "model.full_finetune=true"), transformer)
    n = plain.transformer_parameters
    ema = estimate(settings("sd3", models("sd3"), "model.full_finetune=true", "train.ema_decay=0.99"), transformer)
    assert ema.total_bytes == plain.total_bytes + FP32 * n
    twice = estimate(
        settings("sd3", models("sd3"), "model.full_finetune=true", "methods.apex.fake_updates=1"), transformer
    )
    assert twice.total_bytes == plain.total_bytes + 8 * n  # a second AdamW state


def test_fsdp_divides_every_copy_over_the_processes(models):
    transformer = meta_transformer("sd3", str(models("sd3")))
    overrides = ("model.full_finetune=true", "method=dmd2", "train.ema_decay=0.99")
    whole = estimate(settings("sd3", models("sd3"), *overrides), transformer, processes=4)
    config = settings("sd3", models("sd3"), *overrides, "model.fsdp=true")
    assert estimate(config, transformer, processes=1).total_bytes == whole.total_bytes  # nothing to shard
    sharded = estimate(config, transformer, processes=4)
    *copies, gathered = sharded.rows
    assert [row.shards for row in copies] == [4] * len(whole.rows) and len(copies) == len(whole.rows)
    assert sum(row.bytes for row in copies) == sum(math.ceil(row.bytes / 4) for row in whole.rows)
    assert gathered.component.startswith("FSDP: gathered") and gathered.bytes_per_parameter == FP32 + 4
    assert 0 < gathered.parameters <= sharded.transformer_parameters
    text = format_estimate(sharded, every_method(config, transformer, 4), 4)
    assert "student (fp32 + grad + AdamW), sharded ÷ 4" in text and "FSDP over 4 processes" in text
