"""The pixel-space job on an image–text folder instead of Fashion-MNIST, through the command line on a tiny
scale: a teacher of the folder's channels and size, a student distilled from it on the folder's captions, and
an evaluation against the folder's held-out split, with accuracy only where the folder has classes."""

import json
from pathlib import Path

import pytest
from PIL import Image

from apexgen.cli import main
from apexgen.jobs.pixel.evaluate import NEAR_DUPLICATE_RMS
from apexgen.jobs.pixel.models import load_teacher
from tests.data.test_folder_splits import write_folder
from tests.jobs.pixel.test_end_to_end import tiny

HELD_OUT_IMAGES = 6


def folder_settings(root, data) -> list[str]:
    """The tiny settings of the Fashion-MNIST test on the folder: 4 evaluation images (2 captions × 2)."""
    kept = [s for s in tiny(root) if not s.startswith(("data.", "eval.fid.samples", "eval.batch_size", "eval.teacher"))]
    return [
        *kept,
        "data.kind=imagefolder",
        f"data.path={data}",
        f"data.held_out={HELD_OUT_IMAGES / 30}",
        "eval.fid.samples=4",
        "eval.batch_size=4",
        "eval.teacher_nfe=[1]",
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    data = write_folder(root / "data", 30, size=(16, 16), labels=["red", "blue", "green"] * 10)
    settings = folder_settings(root, data)
    assert main(["train-teacher", "--out", str(root / "teacher"), *settings]) == 0
    assert main(["distill", "--teacher", str(root / "teacher"), "--out", str(root / "apex"), *settings]) == 0
    return root, settings


def evaluate(root, settings, out) -> dict:
    command = ["eval", "--teacher", str(root / "teacher"), "--students", str(root / "apex"), "--out", str(out)]
    assert main([*command, *settings]) == 0
    return json.loads((out / "report.json").read_text())


def test_the_teacher_takes_the_folders_channels_and_size(run):
    root, _ = run
    config = load_teacher(root / "teacher").transformer.config
    assert (config.in_channels, config.out_channels, config.sample_size) == (3, 3, 16)


def test_evaluation_is_against_the_held_out_split_with_accuracy_from_the_folders_classes(run):
    root, settings = run
    report = evaluate(root, settings, root / "eval")
    assert report["reference_samples"] == 4 and report["samples"] == 4  # 4 of the 6 held-out images
    assert report["near_duplicate_distance"] == pytest.approx(NEAR_DUPLICATE_RMS * (3 * 16 * 16) ** 0.5)
    assert 0 <= report["classifier_test_accuracy"] <= 1
    assert [(r["method"], r["nfe"]) for r in report["rows"]] == [("teacher", 1), ("apex", 1)]
    assert all(0 <= r["accuracy"] <= 1 and r["fid"] > 0 for r in report["rows"])
    assert "held-out split of" in (root / "eval" / "report.md").read_text()
    with Image.open(root / "eval" / "grid_apex_nfe1.png") as grid:
        assert grid.mode == "RGB"


def test_the_stock_pipeline_samples_the_folders_student_in_colour(run, tmp_path):
    root, _ = run
    command = ["sample", "--teacher", str(root / "teacher"), "--lora", str(root / "apex" / "export")]
    assert main([*command, "--prompt", "image 3", "--images", "2", "--out", str(tmp_path / "grid.png")]) == 0
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.mode == "RGB"


def test_a_folder_without_classes_is_scored_without_accuracy(run):
    root, settings = run
    report = evaluate(root, [*settings, "data.label_column=kind"], root / "eval_no_classes")
    assert report["classifier_test_accuracy"] is None
    assert all(r["accuracy"] is None for r in report["rows"])
    assert "no accuracy (the data has no classes)" in (root / "eval_no_classes" / "report.md").read_text()


def test_a_teacher_of_other_images_is_refused_before_training(run, tmp_path, caplog):
    root, settings = run
    assert main(["distill", "--out", str(tmp_path / "apex"), *settings]) == 3  # the shipped 1×32×32 teacher
    assert "draws 1×32×32 images, the image–text folder" in caplog.text and "holds 3×16×16" in caplog.text
    assert not (tmp_path / "apex" / "checkpoints").exists()


def test_a_patch_size_that_does_not_divide_the_images_is_a_setting_error(run, tmp_path, caplog):
    root, settings = run
    assert main(["train-teacher", "--out", str(tmp_path / "teacher"), *settings, "model.patch_size=3"]) == 2
    assert "model.patch_size" in caplog.text and "does not divide the data's image side 16" in caplog.text


@pytest.mark.parametrize(
    "settings, message",
    [
        (["data.path=/data/captioned"], "config key 'data.path': is the folder of data.kind=imagefolder"),
        (["data.kind=imagefolder"], "config key 'data.path': required: the image–text folder"),
        (["data.kind=imagefolder", "data.path=x", "data.held_out=1"], "'data.held_out': must be between 0 and 1"),
    ],
)
def test_folder_settings_are_checked_before_anything_runs(settings, message, caplog):
    assert main(["distill", "--out", "unused", "--dry-run", *settings]) == 2
    assert message in caplog.text


PIXEL_RECIPES = sorted((Path(__file__).parents[3] / "configs" / "pixel").glob("*.yaml"))


@pytest.mark.parametrize("recipe", PIXEL_RECIPES, ids=lambda path: path.stem)
def test_the_pixel_job_recipes_load_and_dry_run(recipe):
    assert main(["train-teacher", "--config", str(recipe), "--out", "unused", "--dry-run"]) == 0
