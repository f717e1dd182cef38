"""Bad input to the main job's commands: a clear error that names the problem and the fix, and nothing
already on disk is overwritten."""

import shutil

import pytest
import torch

from apexgen.backbones.lora import LoRAConfig, add_lora
from apexgen.cli import main
from apexgen.export import export_lora
from apexgen.t2i.config import TeacherModelConfig
from apexgen.t2i.models import ModelFileError, load_student, load_teacher, new_teacher, save_teacher

TINY_MODEL = TeacherModelConfig(num_layers=1, num_attention_heads=2, attention_head_dim=16)


@pytest.fixture
def teacher_dir(tmp_path):
    save_teacher(new_teacher(TINY_MODEL, seed=0), tmp_path / "teacher", {})
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
        new_teacher(TeacherModelConfig(num_layers=1, num_attention_heads=2, attention_head_dim=8), 0), other, {}
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
