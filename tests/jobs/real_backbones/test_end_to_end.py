"""``apexgen train`` on each backbone's tiny stock pipeline, saved with ``save_pretrained`` and loaded back
from its folder: 2 APEX steps (LoRA on all five, full fine-tuning on SD3 and Qwen-Image) → the export →
``apexgen sample`` with the stock pipeline at 1 step writes an image; exact ``--resume``; ``apexgen export``
of the newest checkpoint."""

import json
import logging
import math

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from apexgen.cli import main
from apexgen.export import LORA_WEIGHTS, SETTINGS_FILE, TRANSFORMER_FOLDER, read_settings
from tests.backbones.tiny import NAMES
from tests.data.tiny_pipelines import SIDE
from tests.jobs.real_backbones.helpers import images, sample, train_arguments


def check_run(out, name: str, weights: str) -> None:
    settings = read_settings(out / "export")
    assert settings["backbone"] == name and settings["weights"] == weights
    history = json.loads((out / "history.json").read_text())
    assert [entry["step"] for entry in history] == [1, 2]
    assert all(math.isfinite(value) for entry in history for value in entry.values())
    assert sorted(path.name for path in (out / "checkpoints").iterdir()) == ["step_0000001", "step_0000002"]
    with Image.open(out / "previews" / "step_0000002.png") as grid:  # 1 row (1 step) × 2 prompts
        assert grid.size == (2 * SIDE, SIDE)
    summary = json.loads((out / "run.json").read_text())
    assert summary["method"] == "apex" and summary["trainable_parameters"] > 0


@pytest.mark.parametrize("name", NAMES)
def test_lora_run_exports_a_lora_that_the_stock_pipeline_samples(tmp_path, models, name):
    out = tmp_path / "run"
    assert main(train_arguments(name, models(name), images(tmp_path / "data"), out)) == 0
    check_run(out, name, "lora")
    assert (out / "export" / LORA_WEIGHTS).is_file()
    assert sample(models(name), out / "export", tmp_path / "image.png").size == (SIDE, SIDE)


@pytest.mark.parametrize("name", ["sd3", "qwen_image"])
def test_full_fine_tuning_run_exports_a_transformer_that_the_stock_pipeline_samples(tmp_path, models, name):
    out = tmp_path / "run"
    assert main(train_arguments(name, models(name), images(tmp_path / "data"), out, "model.full_finetune=true")) == 0
    check_run(out, name, "full")
    trained = load_file(next((out / "export" / TRANSFORMER_FOLDER).glob("*.safetensors")))
    base = load_file(next((models(name) / "transformer").glob("*.safetensors")))
    assert trained.keys() == base.keys() and any(not torch.equal(trained[k], base[k]) for k in base)
    assert sample(models(name), out / "export", tmp_path / "image.png", steps=2).size == (SIDE, SIDE)


def test_resume_continues_exactly_where_the_run_stopped(tmp_path, models, caplog):
    data, model = images(tmp_path / "data"), models("sd3")
    assert main(train_arguments("sd3", model, data, tmp_path / "whole", "train.steps=4")) == 0
    assert main(train_arguments("sd3", model, data, tmp_path / "parts", "train.steps=2")) == 0
    with caplog.at_level(logging.INFO):
        assert main([*train_arguments("sd3", model, data, tmp_path / "parts", "train.steps=4"), "--resume"]) == 0
    assert "resumed from" in caplog.text and "step_0000002" in caplog.text
    (done,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("done in ")]
    parts_dir = tmp_path / "parts"
    assert "4 steps" in done and f"export in {parts_dir / 'export'}, summary {parts_dir / 'run.json'}" in done
    whole, parts = (load_file(tmp_path / run / "export" / LORA_WEIGHTS) for run in ("whole", "parts"))
    assert whole.keys() == parts.keys() and all(torch.equal(whole[k], parts[k]) for k in whole)
    history = json.loads((tmp_path / "parts" / "history.json").read_text())
    assert [entry["step"] for entry in history] == [1, 2, 3, 4]


def test_export_command_rebuilds_the_export_from_the_newest_checkpoint(tmp_path, models):
    """DMD2 in LoRA form (two adapters; only the student's is exported) with an EMA of the student."""
    out = tmp_path / "run"
    overrides = ("method=dmd2", "methods.dmd2.critic_updates=1", "train.ema_decay=0.5")
    assert main(train_arguments("qwen_image", models("qwen_image"), images(tmp_path / "data"), out, *overrides)) == 0
    assert main(["export", "--run", str(out), "--out", str(tmp_path / "again")]) == 0
    first, again = (load_file(folder / LORA_WEIGHTS) for folder in (out / "export", tmp_path / "again"))
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    assert not any(".fake." in key for key in first)
    assert (tmp_path / "again" / SETTINGS_FILE).is_file()


def test_prompt_only_data_bf16_weights_and_gradient_checkpointing(tmp_path, models):
    """APEX's default rows need only prompts; frozen bf16 weights under bf16 autocast, fp32 LoRA weights."""
    (tmp_path / "prompts.txt").write_text("a red cat\na blue dog\ngreen grass\n")
    overrides = ("data.kind=prompts", "model.dtype=bf16", "train.precision=bf16", "model.gradient_checkpointing=true")
    out = tmp_path / "run"
    assert main(train_arguments("sana", models("sana"), tmp_path / "prompts.txt", out, *overrides)) == 0
    check_run(out, "sana", "lora")
    weights = load_file(out / "export" / LORA_WEIGHTS)
    assert weights and all(tensor.dtype == torch.float32 for tensor in weights.values())
