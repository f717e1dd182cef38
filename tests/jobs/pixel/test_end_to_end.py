"""The main job on a tiny scale: train-teacher → distill → eval → export → the stock diffusers pipeline,
through the command line, on CPU in about a minute."""

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusion3Pipeline
from PIL import Image

from apexgen.cli import main
from apexgen.export import read_settings, sampling_scheduler
from apexgen.jobs.pixel.models import load_student, load_teacher
from apexgen.sampling import one_step_sample
from apexgen.text import MiniLMEncoder

STOCK_TOLERANCE = 1e-4


def tiny(tmp: Path) -> list[str]:
    """Settings that keep every stage to seconds: a 1-block model, a 64-image data subset, a pool of 8
    teacher endpoints, 120 evaluation images (2 per held-out prompt), a small classifier, caches inside the
    test's folder."""
    return [
        "model.num_layers=1",
        "model.num_attention_heads=2",
        "model.attention_head_dim=16",
        "data.limit=64",
        "teacher.steps=4",
        "teacher.batch_size=8",
        "teacher.log_every=2",
        "teacher.checkpoint_every=2",
        "teacher.preview_every=0",
        "distill.train.steps=3",
        "distill.train.batch_size=8",
        "distill.train.checkpoint_every=3",
        "distill.train.preview_every=0",
        "distill.lora.rank=4",
        "distill.lora.alpha=4",
        "methods.apex.regression_pairs=8",  # the regression anchor's pool of teacher endpoints
        "methods.apex.regression_steps=2",
        "eval.fid.samples=120",
        "eval.batch_size=60",
        "eval.grid_seeds=2",
        "eval.teacher_nfe=[1, 2]",
        "eval.student_nfe=[1]",
        f"eval.fid.cache_dir={tmp / 'fid'}",
        f"eval.classifier.cache_dir={tmp / 'classifier'}",
        "eval.classifier.train_limit=512",
        "eval.classifier.epochs=1",
        f"text.cache_dir={tmp / 'text'}",
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("t2i")
    settings = tiny(root)
    assert main(["train-teacher", "--out", str(root / "teacher"), *settings]) == 0
    assert main(["distill", "--teacher", str(root / "teacher"), "--out", str(root / "apex"), *settings]) == 0
    assert (
        main(
            [
                "eval",
                "--teacher",
                str(root / "teacher"),
                "--students",
                str(root / "apex"),
                "--out",
                str(root / "eval"),
                *settings,
            ]
        )
        == 0
    )
    return root, settings


def test_every_stage_leaves_its_files(run):
    root, _ = run
    assert (root / "teacher" / "transformer" / "config.json").is_file()
    assert list((root / "teacher" / "previews").glob("*.png"))
    assert (root / "apex" / "export" / "pytorch_lora_weights.safetensors").is_file()
    assert (root / "apex" / "checkpoints").is_dir() and (root / "apex" / "ledger_summary.json").is_file()
    report = json.loads((root / "eval" / "report.json").read_text())
    rows = {(r["method"], r["nfe"]): r for r in report["rows"]}
    assert set(rows) == {("teacher", 1), ("teacher", 2), ("apex", 1)}
    for row in rows.values():
        assert {"fid", "accuracy", "diversity", "seconds_per_image", "train_seconds", "peak_memory_mb"} <= set(row)
        assert row["fid"] > 0 and 0 <= row["accuracy"] <= 1
    for name in ("report.md", "fid_vs_nfe.png", "training_curves.png", "grid_apex_nfe1.png", "grid_teacher_nfe2.png"):
        assert (root / "eval" / name).stat().st_size > 100


def test_resume_continues_from_the_last_checkpoint_and_ends_with_where_the_outputs_are(run, caplog):
    root, settings = run
    history = json.loads((root / "apex" / "history.json").read_text())
    command = ["distill", "--teacher", str(root / "teacher"), "--out", str(root / "apex"), "--resume", *settings]
    with caplog.at_level(logging.INFO):
        assert main([*command, "distill.train.steps=4"]) == 0
    resumed = json.loads((root / "apex" / "history.json").read_text())
    assert resumed[: len(history)] == history and resumed[-1]["step"] == 4
    (done,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("done in ")]
    assert f"apex student in {root / 'apex'} (export in {root / 'apex' / 'export'}" in done


def test_apexgen_sample_with_the_teacher_writes_a_grid_through_the_stock_pipeline(run, caplog):
    root, _ = run
    grid = root / "samples" / "dress.png"
    command = ["sample", "--teacher", str(root / "teacher"), "--lora", str(root / "apex" / "export")]
    with caplog.at_level(logging.INFO):
        assert main([*command, "--prompt", "a red dress", "--images", "4", "--out", str(grid)]) == 0
    assert "4 image(s) of 'a red dress' with 1 step(s) of the stock StableDiffusion3Pipeline" in caplog.text
    with Image.open(grid) as picture:  # 4 images of 32 pixels in a row, 2-pixel borders, each pixel 2×2
        assert picture.size == (2 * (4 * 34 + 2), 2 * 36) and picture.mode == "L"
    assert main([*command, "--prompt", "a red dress", "--steps", "2", "--out", str(grid)]) == 0


def test_exported_lora_in_the_stock_sd3_pipeline_equals_our_one_step_sampler(run):
    root, _ = run
    student = load_student(root / "teacher", root / "apex" / "export")
    settings = read_settings(root / "apex" / "export")
    pipeline = StableDiffusion3Pipeline(
        transformer=load_teacher(root / "teacher").transformer,
        scheduler=sampling_scheduler(settings),
        vae=None,
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        text_encoder_3=None,
        tokenizer_3=None,
    )
    pipeline.set_progress_bar_config(disable=True)
    pipeline.load_lora_weights(root / "apex" / "export")
    cond = MiniLMEncoder(max_tokens=16).encode(["a photo of a sneaker", "a dress"])
    noise = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        stock = pipeline(
            latents=noise,
            prompt_embeds=cond.tokens,
            pooled_prompt_embeds=cond.pooled,
            **settings["pipeline_arguments"],
            **settings["steps"]["1"],
            output_type="latent",
        ).images
    ours = one_step_sample(student, noise, cond)
    assert (stock - ours).abs().max() <= STOCK_TOLERANCE
    lora_off = one_step_sample(load_teacher(root / "teacher"), noise, cond)
    assert (ours - lora_off).abs().max() > 1e-6  # the LoRA was trained and loaded


def test_eval_reuses_rows_of_the_same_weights_and_settings_and_scores_the_rest_again(run, caplog):
    root, settings = run
    again = root / "eval_again"
    shutil.copytree(root / "eval" / "rows", again / "rows")
    tampered = json.loads((again / "rows" / "teacher_nfe2.json").read_text())
    tampered["key"]["weights"] = "0" * 64
    (again / "rows" / "teacher_nfe2.json").write_text(json.dumps(tampered))
    (again / "rows" / "apex_nfe1.json").write_text('{"key": {"method": "apex"')  # truncated
    command = ["eval", "--teacher", str(root / "teacher"), "--students", str(root / "apex"), "--out", str(again)]
    with caplog.at_level(logging.INFO, logger="apexgen.jobs.pixel.evaluate"):
        assert main([*command, *settings]) == 0
    assert "teacher NFE 1: reusing the row" in caplog.text
    assert "teacher_nfe2.json was measured with other weights or settings" in caplog.text
    assert "apex_nfe1.json is unreadable" in caplog.text and "apex NFE 1: reusing" not in caplog.text
    first = {(r["method"], r["nfe"]): r for r in json.loads((root / "eval" / "report.json").read_text())["rows"]}
    second = {(r["method"], r["nfe"]): r for r in json.loads((again / "report.json").read_text())["rows"]}
    assert second[("teacher", 1)] == first[("teacher", 1)]  # kept: even the timing is the first run's
    assert second[("teacher", 2)]["fid"] == pytest.approx(first[("teacher", 2)]["fid"], rel=1e-4)  # same noise
    assert second[("teacher", 2)]["seconds_per_image"] != first[("teacher", 2)]["seconds_per_image"]  # new timing
