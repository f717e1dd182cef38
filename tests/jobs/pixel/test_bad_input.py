"""Bad input to the main job's commands: a clear error that names the problem and the fix, and nothing
already on disk is overwritten."""

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from apexgen.backbones.lora import LoRAConfig, add_lora
from apexgen.cli import main
from apexgen.config import ConfigError, load
from apexgen.data.fashion_mnist import IMAGE_SHAPE
from apexgen.export import export_lora
from apexgen.jobs.pixel.config import T2IConfig, TeacherModelConfig
from apexgen.jobs.pixel.models import ModelFileError, load_student, load_teacher, new_teacher, save_teacher
from apexgen.overrides import parse_overrides
from tests.jobs.pixel.test_end_to_end import tiny

TINY_MODEL = TeacherModelConfig(num_layers=1, num_attention_heads=2, attention_head_dim=16)


@pytest.fixture
def teacher_dir(tmp_path):
    save_teacher(new_teacher(TINY_MODEL, IMAGE_SHAPE, seed=0), tmp_path / "teacher", {})
    return tmp_path / "teacher"


def test_missing_dataset_says_how_to_install_it(tmp_path, caplog):
    code = main(["train-teacher", "--out", str(tmp_path / "t"), f"data.data_dir={tmp_path / 'nowhere'}"])
    assert code == 3
    assert "apt-get install dataset-fashion-mnist" in caplog.text
    assert not (tmp_path / "t" / "transformer").exists()


def test_truncated_teacher_is_reported_and_the_previous_export_is_kept(tmp_path, teacher_dir, caplog):
    weights = teacher_dir / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    previous = tmp_path / "run" / "export" / "pytorch_lora_weights.safetensors"
    previous.parent.mkdir(parents=True)
    previous.write_bytes(b"an earlier export")
    command = ["distill", "--teacher", str(teacher_dir), "--out", str(tmp_path / "run"), "data.limit=64"]
    assert main(command) == 3  # the folder holds a run: refused before the teacher is read
    assert "already holds a run (export/)" in caplog.text
    caplog.clear()
    assert main([*command, "--overwrite"]) == 3  # the previous run goes only once the inputs are read
    assert "corrupt or truncated" in caplog.text and str(teacher_dir / "transformer") in caplog.text
    assert previous.read_bytes() == b"an earlier export"


def test_missing_teacher_folder_says_how_to_make_one(tmp_path):
    with pytest.raises(ModelFileError, match="apexgen train-teacher"):
        load_teacher(tmp_path / "empty")


def test_lora_of_another_shape_is_rejected(tmp_path, teacher_dir):
    other = tmp_path / "other"
    save_teacher(
        new_teacher(TeacherModelConfig(num_layers=1, num_attention_heads=2, attention_head_dim=8), IMAGE_SHAPE, 0),
        other,
        {},
    )
    student = load_teacher(other)
    add_lora(student, LoRAConfig(rank=4, alpha=4))
    export_lora(student, tmp_path / "export")
    with pytest.raises(ModelFileError, match="does not fit the teacher|does not match this teacher"):
        load_student(teacher_dir, tmp_path / "export")


def test_truncated_lora_file_is_rejected(tmp_path, teacher_dir):
    student = load_teacher(teacher_dir)
    add_lora(student, LoRAConfig(rank=4, alpha=4))
    with torch.no_grad():
        for name, p in student.named_parameters():
            if "lora_" in name:
                p.normal_()
    export_lora(student, tmp_path / "export")
    weights = tmp_path / "export" / "pytorch_lora_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:500])
    with pytest.raises(ModelFileError, match="does not fit the teacher"):
        load_student(teacher_dir, tmp_path / "export")


def test_unknown_method_names_the_allowed_ones(tmp_path, teacher_dir, caplog):
    code = main(["distill", "--teacher", str(teacher_dir), "--method", "gan", "--out", str(tmp_path / "run")])
    assert code == 2
    assert "distill.method" in caplog.text and "apex, twinflow, dmd2, consistency, regression" in caplog.text
    assert not (tmp_path / "run").exists()


def test_student_folder_without_an_export_says_what_to_pass(tmp_path, teacher_dir):
    shutil.rmtree(tmp_path / "x", ignore_errors=True)
    (tmp_path / "x").mkdir()
    with pytest.raises(ModelFileError, match="export"):
        load_student(teacher_dir, tmp_path / "x")


def test_a_wrong_nfe_is_blamed_on_its_own_key():
    with pytest.raises(ConfigError) as error:
        load(T2IConfig, parse_overrides(["eval.student_nfe=[0, 3]"]))
    assert error.value.key == "eval.student_nfe" and "got [0, 3]" in str(error.value)


def test_a_teacher_config_that_does_not_match_its_weights_is_not_called_corrupt(teacher_dir):
    config = teacher_dir / "transformer" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "attention_head_dim": 8}))
    with pytest.raises(ModelFileError) as error:
        load_teacher(teacher_dir)
    assert "config.json does not match its weights" in str(error.value)
    assert "e.g. norm_out.linear.bias: (64,) in the weights, (32,) by config.json" in str(error.value)
    assert "corrupt" not in str(error.value) and "restore the config.json saved with these weights" in str(error.value)


def tiny_distill(tmp_path: Path, teacher: Path, *extra: str) -> list[str]:
    return ["distill", "--teacher", str(teacher), "--out", str(tmp_path / "run"), *tiny(tmp_path), *extra]


def test_nan_in_the_teachers_weights_is_blamed_on_the_weights_not_the_learning_rate(tmp_path, caplog):
    teacher = new_teacher(TINY_MODEL, IMAGE_SHAPE, seed=0)
    with torch.no_grad():
        teacher.transformer.proj_out.weight[0, 0] = float("nan")
    save_teacher(teacher, tmp_path / "teacher", {})
    assert main(tiny_distill(tmp_path, tmp_path / "teacher", "distill.train.checkpoint_every=0")) == 3
    (message,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "at step 1, the first step of this run, so not a learning-rate problem" in message
    assert "may be corrupt" in message and "optimizer.lr" not in message


@pytest.fixture
def student_runs(tmp_path):
    """An export folder inside a finished-looking run, and an interrupted run (a checkpoint, no run.json)."""
    finished = tmp_path / "finished"
    (finished / "export").mkdir(parents=True)
    (finished / "export" / "apexgen_sampling.json").write_text("{}")
    (finished / "run.json").write_text(json.dumps({"method": "apex"}))
    (finished / "history.json").write_text("[]")
    interrupted = tmp_path / "interrupted"
    (interrupted / "checkpoints" / "step_0000002").mkdir(parents=True)
    return finished, interrupted


def test_eval_of_an_export_folder_or_an_unfinished_run_says_what_to_pass(tmp_path, student_runs, caplog):
    finished, interrupted = student_runs
    command = ["eval", "--out", str(tmp_path / "eval"), "--students"]
    assert main([*command, str(finished / "export")]) == 3
    assert (
        f"this is an export folder (apexgen_sampling.json, no run.json); pass the run that holds it: "
        f"--students {finished}" in caplog.text
    )
    assert main([*command, str(interrupted)]) == 3
    assert (
        "this run is unfinished (checkpoints up to step_0000002, no run.json): finish it with "
        f"`apexgen distill --out {interrupted} --resume`" in caplog.text
    )
    (finished / "run.json").rename(finished / "distill.json")  # a run written before run.json
    assert main([*command, str(finished)]) == 3
    assert (
        f"its summary is distill.json, the name before run.json; rename it: "
        f"`mv {finished / 'distill.json'} {finished / 'run.json'}`" in caplog.text
    )
    (finished / "distill.json").unlink()
    (finished / "run.json").write_text('{"method": "ap')
    assert main([*command, str(finished)]) == 3
    assert "run.json is corrupt or truncated" in caplog.text
    assert not (tmp_path / "eval").exists()


def test_overrides_after_students_are_overrides_not_folders(student_runs, capsys):
    finished, _ = student_runs
    assert main(["eval", "--students", str(finished), "eval.fid.samples=240", "--dry-run"]) == 0
    assert "samples: 240" in capsys.readouterr().out


def test_sample_with_the_teacher_refuses_a_run_folder_and_a_student_of_another_model(tmp_path, teacher_dir, caplog):
    command = ["sample", "--teacher", str(teacher_dir), "--prompt", "a red dress", "--out", str(tmp_path / "g.png")]
    (tmp_path / "run" / "export").mkdir(parents=True)
    assert main([*command, "--lora", str(tmp_path / "run")]) == 3
    assert "is not an apexgen export (it is a run folder: pass its export/ subfolder)" in caplog.text
    other = tmp_path / "other"
    (other).mkdir()
    (other / "apexgen_sampling.json").write_text(json.dumps({"backbone": "flux"}))
    assert main([*command, "--lora", str(other)]) == 3
    assert "holds a flux student of a diffusers model" in caplog.text and "sample it with --model" in caplog.text
    assert main([*command, "--lora", str(other), "--resolution", "64"]) == 2
    assert "--resolution and --dtype apply to --model pipelines" in caplog.text
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize(
    ("override", "key", "hint"),
    [
        ("method.apex.real_guidance=2", "method", "renamed: use methods"),
        ("methods.apex.shift.a=-1", "methods.apex.shift", "renamed: use methods.apex.condition_shift"),
    ],
)
def test_a_key_of_an_earlier_release_names_its_new_name(override, key, hint):
    with pytest.raises(ConfigError) as error:
        load(T2IConfig, parse_overrides([override]))
    assert error.value.key == key and hint in str(error.value)
