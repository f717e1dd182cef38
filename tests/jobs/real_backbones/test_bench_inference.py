"""``apexgen bench --inference`` on tiny saved pipelines: the teacher with CFG against the student at 1, 2 and
4 steps, transformer time and end to end; the transformer calls it counts are those the stock pipeline
makes (counted with torch.profiler, no hook on the transformer)."""

import json

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from apexgen.cli import main
from apexgen.condition import TextCondition
from apexgen.config import ConfigError
from apexgen.jobs.real_backbones.bench_calls import (
    InferenceSettings,
    Setting,
    check_text_fits,
    load_pipelines,
    pipeline_run,
)
from apexgen.jobs.real_backbones.bench_inference import run_inference_bench, settings_grid
from apexgen.jobs.real_backbones.pipeline import PipelineError

# The teacher's transformer calls per pipeline call, and rows per call in images: SD3 batches the two CFG
# branches into one call of 2× batch, Qwen-Image's true CFG makes a second call.
TEACHER_CALLS = {"sd3": (1, 2), "qwen_image": (2, 1)}
TEACHER_STEPS = 8


def bench(name: str, model, out, *options: str) -> int:
    arguments = ["bench", "--inference", "--backbone", name, "--model", str(model), "--size", "tiny"]
    return main([*arguments, "--teacher-steps", str(TEACHER_STEPS), "--repeats", "2", "--out", str(out), *options])


@pytest.mark.parametrize("name", ["sd3", "qwen_image"])
def test_teacher_and_student_rows_with_their_counts(name, models, tmp_path, capsys):
    assert bench(name, models(name), tmp_path) == 0
    report = json.loads((tmp_path / "bench_inference.json").read_text())
    rows = report["rows"]
    assert [row["nfe"] for row in rows] == [TEACHER_STEPS, 1, 2, 4]
    calls_per_step, batch = TEACHER_CALLS[name]
    teacher = rows[0]
    assert (teacher["transformer_calls"], teacher["batch_per_call"]) == (TEACHER_STEPS * calls_per_step, batch)
    assert teacher["transformer_evaluations"] == 2 * TEACHER_STEPS  # two CFG branches per step, however batched
    for row in rows[1:]:
        assert row["transformer_calls"] == row["transformer_evaluations"] == row["nfe"] and row["batch_per_call"] == 1
        assert row["transformer_speedup"] > 1
    assert rows[1]["end_to_end_speedup"] > 1
    assert teacher["transformer_speedup"] == teacher["end_to_end_speedup"] == 1
    assert report["settings"]["resolution"] == 32 and report["cfg_batched"] == (name == "sd3")
    table = (tmp_path / "bench_inference.md").read_text()
    assert "| setting | NFE | transformer calls | batch per call | transformer evaluations |" in table
    assert f"| teacher, CFG, {TEACHER_STEPS} steps | {TEACHER_STEPS} |" in capsys.readouterr().out


def stock_calls(pipelines, setting: Setting, settings: InferenceSettings) -> list[int]:
    """The rows of each transformer call in one real pipeline call: the leading dimension of the first
    operator's input inside each call of the transformer module, from torch.profiler's module events."""
    module = f"nn.Module: {type(pipelines.teacher.transformer).__name__}"
    with profile(activities=[ProfilerActivity.CPU], with_stack=True, record_shapes=True) as trace:
        pipeline_run(pipelines, setting, settings)()
    return [first_operator(event).input_shapes[0][0] for event in trace.events() if event.name.startswith(module)]


def first_operator(event):
    for child in event.cpu_children:
        if child.name.startswith("aten::") and child.input_shapes and child.input_shapes[0]:
            return child
        found = first_operator(child)
        if found is not None:
            return found
    return None


@pytest.mark.parametrize("name", ["sd3", "qwen_image"])
def test_the_counted_calls_are_the_stock_pipelines(name, models):
    settings = InferenceSettings(name, str(models(name)), "tiny", batch=2, teacher_steps=3)
    pipelines = load_pipelines(settings)
    teacher, *students = settings_grid(settings)
    calls_per_step, batch = TEACHER_CALLS[name]
    assert stock_calls(pipelines, teacher, settings) == [batch * settings.batch] * (3 * calls_per_step)
    for student in students:
        assert stock_calls(pipelines, student, settings) == [settings.batch] * student.steps


def test_bad_input_is_refused_in_one_line(models, tmp_path, caplog):
    assert bench("qwen_image", models("sd3"), tmp_path / "mismatch") == 3
    assert "holds a StableDiffusion3Pipeline, but the qwen_image backbone needs a QwenImagePipeline" in caplog.text
    caplog.clear()
    assert main(["bench", "--inference", "--backbone", "sd3"]) == 2
    assert "--inference needs --model" in caplog.text
    caplog.clear()
    assert main(["bench", "--inference", "--backbone", "sd3", "--model", str(models("sd3")), "--lora"]) == 2
    assert "--lora: only for the training bench" in caplog.text
    caplog.clear()
    assert bench("sd3", models("sd3"), tmp_path / "size", "--resolution", "31") == 2
    assert "--resolution 31" in caplog.text
    assert all("\n" not in record.getMessage() for record in caplog.records)
    for option in (["--teacher-steps", "0"], ["--backbone", "sdxl"]):
        with pytest.raises(SystemExit) as refused:
            bench("sd3", models("sd3"), tmp_path / "steps", *option)
        assert refused.value.code == 2
    assert not any((tmp_path / folder).exists() for folder in ("mismatch", "size", "steps"))


def test_library_refusals_and_no_overwrite(models, tmp_path, caplog):
    with pytest.raises(ConfigError, match="teacher steps must be ≥ 1, got 0"):
        run_inference_bench(InferenceSettings("sd3", str(models("sd3")), "tiny", teacher_steps=0), tmp_path)
    with pytest.raises(ValueError, match="unknown backbone 'sdxl'"):
        run_inference_bench(InferenceSettings("sdxl", str(models("sd3"))), tmp_path)
    (tmp_path / "bench_inference.json").write_text("{}")
    assert bench("sd3", models("sd3"), tmp_path) == 3
    assert "already holds an inference bench" in caplog.text
    assert (tmp_path / "bench_inference.json").read_text() == "{}"


def test_text_encoders_that_do_not_fit_the_transformer_are_refused(models):
    settings = InferenceSettings("sd3", str(models("sd3")), "tiny")
    adapter = load_pipelines(settings).adapter
    wide = TextCondition(torch.zeros(1, 4, 4096), torch.zeros(1, 2048))  # a real T5's tokens
    with pytest.raises(PipelineError, match="give 4096-wide tokens, the tiny transformer takes 32: pass a"):
        check_text_fits(adapter, wide, settings)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_one_step_student_is_ninety_times_faster_than_the_cfg_teacher_on_a_gpu(tmp_path):
    """The must-show of issue 10 at the 0.7B size, bf16, 512², in transformer time: a pipeline folder with
    text encoders and a VAE at that size's widths (benchmarks/tiny_pipeline.py) and the 0.7b transformer."""
    from benchmarks.tiny_pipeline import build

    build("sd3", "0.7b", seed=0).save_pretrained(tmp_path / "sd3")
    settings = InferenceSettings("sd3", str(tmp_path / "sd3"), "0.7b", device="cuda")
    rows = run_inference_bench(settings, tmp_path / "bench")
    assert rows[0].transformer_evaluations == 100 and rows[1].transformer_evaluations == 1
    assert rows[1].transformer_speedup >= 90, rows[1]
