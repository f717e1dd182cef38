"""Bad input to ``apexgen train`` (and ``export``/``sample``): one clear error naming the problem and the fix,
raised before any training, and no output folder written."""

import json
import shutil

import pytest
from diffusers import SD3Transformer2DModel

import apexgen.jobs.real_backbones.train as run_train
from apexgen.cli import main
from tests.jobs.real_backbones.helpers import images, train_arguments

KNOWN = "sd3, flux, qwen_image, sana, z_image"


def refuse(what: str):
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} although the input is bad")

    return fail


@pytest.fixture
def run(tmp_path, models, caplog):
    """``run(*overrides, name=..., model=...)``: the exit code of a tiny ``apexgen train``; its out folder
    must not exist afterwards."""

    def train(*overrides, name="sd3", model=None, data=None):
        out = tmp_path / "run"
        model = model or models(name)
        code = main(train_arguments(name, model, data or images(tmp_path / "data"), out, *overrides))
        assert not out.exists(), "a failed run wrote its output folder"
        return code

    return train


def test_unknown_backbone_lists_the_known_ones(run, caplog):
    assert run("model.backbone=sdxl") == 2
    assert "model.backbone" in caplog.text and "unknown backbone 'sdxl'" in caplog.text and KNOWN in caplog.text


@pytest.mark.parametrize("component", ["vae", "text_encoder", "transformer", "tokenizer_3"])
def test_model_folder_missing_a_component_is_named_before_loading(
    run, tmp_path, models, caplog, monkeypatch, component
):
    folder = tmp_path / "model"
    shutil.copytree(models("sd3"), folder)
    shutil.rmtree(folder / component)
    monkeypatch.setattr("diffusers.StableDiffusion3Pipeline.from_pretrained", refuse("loaded the pipeline"))
    assert run(model=folder) == 3
    assert f"{folder} has no {component}/ component" in caplog.text
    assert "the sd3 backbone needs a StableDiffusion3Pipeline folder with transformer, scheduler, vae" in caplog.text


def test_folder_that_is_no_pipeline_or_of_another_backbone(run, tmp_path, models, caplog):
    (tmp_path / "empty").mkdir()
    assert run(model=tmp_path / "empty") == 3
    assert "is not a diffusers pipeline folder: model_index.json is missing" in caplog.text
    assert run("model.backbone=flux", model=models("sd3")) == 3
    assert "holds a StableDiffusion3Pipeline, but the flux backbone needs a FluxPipeline" in caplog.text
    assert "use the sd3 backbone (model.backbone=sd3 in a run)" in caplog.text


def test_lora_rank_larger_than_a_layer_fails_before_the_data_is_encoded(run, caplog, monkeypatch):
    monkeypatch.setattr(run_train, "prepare_dataset", refuse("encoded the data"))
    assert run("model.lora.rank=64") == 2
    assert "model.lora.rank" in caplog.text and "LoRA rank 64 is larger than layer" in caplog.text
    assert "lower the rank to at most 32" in caplog.text


def test_batch_smaller_than_the_methods_slices(run, caplog):
    assert run("train.batch_size=1") == 2
    assert "train.batch_size" in caplog.text and "needs at least 2 rows, got 1" in caplog.text
    assert "set train.batch_size=2 or more" in caplog.text


def test_data_folder_without_metadata_fails_before_the_model_is_loaded(run, tmp_path, caplog, monkeypatch):
    data = images(tmp_path / "data")
    (data / "metadata.jsonl").unlink()
    monkeypatch.setattr(run_train, "load_pipeline", refuse("loaded the model"))
    assert run(data=data) == 3
    assert f"{data} has no metadata.jsonl" in caplog.text and '{"file_name": "0001.png", "text":' in caplog.text


def test_a_finished_run_is_not_overwritten_without_resume(tmp_path, models, caplog):
    arguments = train_arguments("sd3", models("sd3"), images(tmp_path / "data"), tmp_path / "run")
    assert main(arguments) == 0
    exported = (tmp_path / "run" / "export" / "pytorch_lora_weights.safetensors").read_bytes()
    assert main(arguments) == 3
    assert "already holds a run" in caplog.text and "pass --resume" in caplog.text
    assert (tmp_path / "run" / "export" / "pytorch_lora_weights.safetensors").read_bytes() == exported


def test_export_and_sample_of_folders_that_are_not_runs_or_exports(tmp_path, models, caplog):
    (tmp_path / "nothing").mkdir()
    assert main(["export", "--run", str(tmp_path / "nothing")]) == 3
    assert "holds no config.yaml: pass the out folder of `apexgen train`" in caplog.text
    arguments = ["sample", "--model", str(models("sd3")), "--lora", str(tmp_path / "nothing"), "--prompt", "a cat"]
    assert main([*arguments, "--out", str(tmp_path / "image.png")]) == 3
    assert "not an apexgen export" in caplog.text and not (tmp_path / "image.png").exists()


def test_sample_refuses_a_lora_of_another_model(tmp_path, models, caplog):
    """A LoRA trained on one SD3 model, sampled with another whose layers have other shapes."""
    out = tmp_path / "run"
    assert main(train_arguments("sd3", models("sd3"), images(tmp_path / "data"), out, "train.steps=1")) == 0
    other = tmp_path / "other"
    shutil.copytree(models("sd3"), other)
    config = json.loads((other / "transformer" / "config.json").read_text())
    transformer = SD3Transformer2DModel.from_config({**config, "attention_head_dim": 8})
    transformer.save_pretrained(other / "transformer")
    arguments = ["sample", "--model", str(other), "--lora", str(out / "export"), "--prompt", "a cat"]
    assert main([*arguments, "--out", str(tmp_path / "image.png")]) == 3
    assert "does not fit the transformer of" in caplog.text and not (tmp_path / "image.png").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--out", "picture"],
            "--out picture: not an image file name (no image extension); give one such as picture.png",
        ),
        (["--device", "cuda"], "--device cuda: no CUDA device is available here; use --device cpu"),
        (["--device", "gpu"], "--device gpu: not a device; use cpu or cuda"),
    ],
)
def test_sample_arguments_are_checked_before_any_model_is_loaded(tmp_path, models, caplog, monkeypatch, extra, message):
    if "cuda" in extra:
        monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr("apexgen.jobs.real_backbones.sample.run_sample", refuse("sampled"))
    monkeypatch.chdir(tmp_path)
    arguments = ["sample", "--model", str(models("sd3")), "--lora", str(tmp_path), "--prompt", "a cat"]
    assert main([*arguments, *extra]) == 2
    assert message in caplog.text


def test_sample_of_no_images_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["sample", "--model", "m", "--lora", str(tmp_path), "--prompt", "a cat", "--images", "0"])
    assert stopped.value.code == 2 and "argument --images: must be ≥ 1, got 0" in capsys.readouterr().err


def test_a_garbage_parquet_file_fails_before_the_model_is_loaded(run, tmp_path, caplog, monkeypatch):
    garbage = tmp_path / "train.parquet"
    garbage.write_bytes(b"PAR1" + bytes(range(256)) * 8)
    monkeypatch.setattr(run_train, "load_pipeline", refuse("loaded the model"))
    assert run("data.kind=parquet", data=garbage) == 3
    assert f"{garbage} is not a readable parquet file" in caplog.text
