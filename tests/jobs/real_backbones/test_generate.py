"""``apexgen generate`` of a tiny SD3 student (2 training steps, exported) for a 3-prompt GenEval file and a
2-prompt DPG-Bench folder: the layouts the scorers read, the same images as ``apexgen sample``, determinism,
refusals of bad input before any model is loaded, no overwrite without --overwrite, --resume."""

import json
import logging
import shutil

import numpy as np
import pytest
from PIL import Image

from apexgen.cli import main
from apexgen.export import SETTINGS_FILE
from apexgen.progress import PROGRESS_VARIABLE
from tests.data.tiny_pipelines import SIDE
from tests.jobs.real_backbones.helpers import images, train_arguments

GENEVAL_LINES = [
    {"tag": "single_object", "include": [{"class": "cat", "count": 1}], "prompt": "a photo of a cat"},
    {"tag": "colors", "include": [{"class": "dog", "count": 1, "color": "blue"}], "prompt": "a photo of a blue dog"},
    {"tag": "counting", "include": [{"class": "apple", "count": 2}], "exclude": [], "prompt": "two apples"},
]
DPG_PROMPTS = {"item_a": "a red cat sits on a green mat", "item_b": "a blue dog under a yellow sky"}


@pytest.fixture(scope="module")
def student(tmp_path_factory, models):
    """(model folder, export folder) of a 2-step APEX LoRA run on the tiny SD3 pipeline."""
    root = tmp_path_factory.mktemp("student")
    model = models("sd3")
    assert main(train_arguments("sd3", model, images(root / "data"), root / "run", "train.preview_every=0")) == 0
    return model, root / "run" / "export"


@pytest.fixture
def geneval(tmp_path):
    path = tmp_path / "evaluation_metadata.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in GENEVAL_LINES))
    return path


@pytest.fixture
def dpg(tmp_path):
    folder = tmp_path / "dpg_prompts"
    folder.mkdir()
    for item, text in DPG_PROMPTS.items():
        (folder / f"{item}.txt").write_text(text + "\n")
    return folder


@pytest.fixture
def generate(student, monkeypatch):
    """``generate(prompts, out, *extra)``: the exit code of ``apexgen generate`` at 32×32."""
    monkeypatch.setenv(PROGRESS_VARIABLE, "1")  # restored after the test: --no-progress sets it to "0"
    model, export = student

    def run(prompts, out, *extra):
        arguments = ["--model", str(model), "--lora", str(export), "--prompts", str(prompts), "--out", str(out)]
        return main(["--no-progress", "generate", *arguments, "--resolution", str(SIDE), *extra])

    return run


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_geneval_layout_holds_each_line_and_one_sample_per_seed(generate, geneval, tmp_path, caplog):
    out = tmp_path / "geneval"
    with caplog.at_level(logging.INFO):
        assert generate(geneval, out, "--seeds", "3", "5") == 0
    assert sorted(path.name for path in out.iterdir()) == ["00000", "00001", "00002"]
    for index, line in enumerate(GENEVAL_LINES):
        folder = out / f"{index:05d}"
        assert json.loads((folder / "metadata.jsonl").read_text()) == line
        assert len((folder / "metadata.jsonl").read_text().splitlines()) == 1
        assert sorted(path.name for path in (folder / "samples").iterdir()) == ["0000.png", "0001.png"]
        assert all(Image.open(path).size == (SIDE, SIDE) for path in (folder / "samples").iterdir())
    assert not list(out.rglob(".*"))  # no temporary file is left
    assert "6 image(s) of 3 prompt(s) written in" in caplog.text and f"{out} (GenEval layout" in caplog.text


def test_dpg_layout_is_one_2x2_grid_per_item(generate, dpg, tmp_path, caplog):
    out = tmp_path / "dpg"
    with caplog.at_level(logging.INFO):
        assert generate(dpg, out, "--images", "4", "--batch", "2") == 0
    assert sorted(path.name for path in out.iterdir()) == ["item_a.png", "item_b.png"]
    assert all(Image.open(path).size == (2 * SIDE, 2 * SIDE) for path in out.iterdir())
    assert f"--image-root-path {out} --resolution {SIDE} --pic-num 4" in caplog.text


def test_dpg_csv_gives_each_item_once(generate, tmp_path):
    csv = tmp_path / "dpg_bench.csv"
    rows = ["item_id,text,proposition_id", "item_a,a red cat,1", "item_a,a red cat,2", 'item_b,"a dog, blue",1']
    csv.write_text("\n".join(rows) + "\n")
    assert generate(csv, tmp_path / "dpg", "--images", "1") == 0
    assert sorted(path.name for path in (tmp_path / "dpg").iterdir()) == ["item_a.png", "item_b.png"]
    assert Image.open(tmp_path / "dpg" / "item_b.png").size == (SIDE, SIDE)  # one seed: the image itself


def test_images_are_those_of_apexgen_sample_and_the_same_twice(generate, student, tmp_path):
    """Batch 1: each image is ``apexgen sample --seed`` of its seed; the DPG grid tiles them row by row. One
    step, batched: the same images (each image's noise from its own seed)."""
    model, export = student
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "cat.txt").write_text("a red cat")
    assert generate(prompts, tmp_path / "one", "--seeds", "0", "1", "2", "3", "--batch", "1") == 0
    assert generate(prompts, tmp_path / "again", "--seeds", "0", "1", "2", "3", "--batch", "1") == 0
    assert generate(prompts, tmp_path / "batched", "--seeds", "0", "1", "2", "3", "--batch", "4") == 0
    grid = pixels(tmp_path / "one" / "cat.png")
    assert np.array_equal(grid, pixels(tmp_path / "again" / "cat.png"))
    assert np.abs(grid.astype(int) - pixels(tmp_path / "batched" / "cat.png")).max() <= 1
    for seed in range(4):
        arguments = ["sample", "--model", str(model), "--lora", str(export), "--prompt", "a red cat"]
        out = tmp_path / f"sample_{seed}.png"
        assert main([*arguments, "--seed", str(seed), "--resolution", str(SIDE), "--out", str(out)]) == 0
        row, column = divmod(seed, 2)
        tile = grid[row * SIDE : (row + 1) * SIDE, column * SIDE : (column + 1) * SIDE]
        assert np.array_equal(tile, pixels(out)), f"seed {seed}"


def test_two_step_images_are_the_same_twice(generate, geneval, tmp_path):
    for out in ("first", "second"):
        assert generate(geneval, tmp_path / out, "--steps", "2", "--images", "2") == 0
    for first in (tmp_path / "first").rglob("*.png"):
        assert np.array_equal(pixels(first), pixels(tmp_path / "second" / first.relative_to(tmp_path / "first")))


def refuse(*args, **kwargs):
    raise AssertionError("loaded the pipeline although the input is bad")


ONE = '{"prompt": "a cat"}\n'
METADATA = "evaluation_metadata.jsonl"


@pytest.mark.parametrize(
    ("name", "content", "extra", "code", "message"),
    [
        ("missing.jsonl", None, [], 3, "missing.jsonl does not exist; pass a GenEval .jsonl file or a DPG-Bench"),
        ("prompts.txt", "a cat\n", [], 3, "prompts.txt: cannot tell the benchmark from the name; pass --format"),
        (METADATA, "\n", [], 3, f"{METADATA} holds no prompts; give a geneval prompt set with at least one prompt"),
        (METADATA, ONE + '{"prompt": "a dog",\n', [], 3, f"{METADATA} line 2 is not valid JSON"),
        (METADATA, ONE + '\n{"tag": "colors"}\n', [], 3, 'line 3 has no "prompt" text; each line needs'),
        (METADATA, ONE, ["--format", "dpg"], 3, "--format dpg needs a folder of .txt files or a .csv file"),
        (METADATA, ONE, ["--steps", "3"], 2, "--steps 3: the export"),
        (METADATA, ONE, ["--seeds", "1", "1"], 2, "--seeds 1 1: a seed is repeated; give each seed once"),
        (METADATA, ONE, ["--seeds", "1", "--seed", "2"], 2, "--seed is the first seed of --images; with --seeds"),
    ],
)
def test_bad_geneval_input_is_refused_before_the_model_is_loaded(
    generate, tmp_path, caplog, monkeypatch, name, content, extra, code, message
):
    monkeypatch.setattr("apexgen.jobs.real_backbones.generate.student_pipeline", refuse)
    if content is not None:
        (tmp_path / name).write_text(content)
    assert generate(tmp_path / name, tmp_path / "out", *extra) == code
    assert message in caplog.text and not (tmp_path / "out").exists()


def test_steps_that_the_export_lacks_are_named_with_those_it_has(generate, student, geneval, tmp_path, caplog):
    _, export = student
    edited = tmp_path / "export"
    shutil.copytree(export, edited)
    settings = json.loads((edited / SETTINGS_FILE).read_text())
    del settings["steps"]["2"]
    (edited / SETTINGS_FILE).write_text(json.dumps(settings))
    model, _ = student
    arguments = ["--model", str(model), "--lora", str(edited), "--prompts", str(geneval), "--out", str(tmp_path / "o")]
    assert main(["generate", *arguments, "--steps", "2"]) == 2
    assert f"--steps 2: the export {edited} has settings for 1, 4 step(s); pass one of them" in caplog.text


@pytest.mark.parametrize(
    ("files", "extra", "code", "message"),
    [
        ({}, [], 3, "has no .txt files; DPG-Bench prompts are one <item_id>.txt per prompt"),
        ({"a": "a cat", "b": "  \n"}, [], 3, "b.txt is empty; write the prompt in it or remove the file"),
        ({"a.v2": "a cat"}, [], 3, "item id 'a.v2' has a '.', '/' or '\\', which the DPG-Bench scorer cannot match"),
        ({"a": "a cat"}, ["--format", "geneval"], 3, "--format geneval needs a .jsonl file"),
        ({"a": "a cat"}, ["--images", "5"], 2, "5 seeds: the DPG-Bench scorer reads at most 4 images per prompt"),
    ],
)
def test_bad_dpg_input_is_refused_before_the_model_is_loaded(
    generate, tmp_path, caplog, monkeypatch, files, extra, code, message
):
    monkeypatch.setattr("apexgen.jobs.real_backbones.generate.student_pipeline", refuse)
    folder = tmp_path / "prompts"
    folder.mkdir()
    for item, text in files.items():
        (folder / f"{item}.txt").write_text(text)
    assert generate(folder, tmp_path / "out", *extra) == code
    assert message in caplog.text and not (tmp_path / "out").exists()


def test_images_are_not_overwritten_without_overwrite(generate, geneval, tmp_path, caplog, monkeypatch):
    out = tmp_path / "geneval"
    assert generate(geneval, out, "--images", "1") == 0
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    with monkeypatch.context() as patched:
        patched.setattr("apexgen.jobs.real_backbones.generate.student_pipeline", refuse)
        assert generate(geneval, out, "--images", "1", "--steps", "2") == 3
    assert f"{out} already holds geneval images (00000, 00001, 00002); pass --resume" in caplog.text
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before
    (out / "00005").mkdir()  # a folder of another prompt set: --overwrite removes it too
    assert generate(geneval, out, "--images", "1", "--steps", "2", "--overwrite") == 0
    assert sorted(path.name for path in out.iterdir()) == ["00000", "00001", "00002"]
    assert (out / "00000" / "samples" / "0000.png").read_bytes() != before[out / "00000" / "samples" / "0000.png"]


def test_resume_writes_only_incomplete_prompts_with_the_same_settings(generate, geneval, dpg, tmp_path, caplog):
    out = tmp_path / "geneval"
    assert generate(geneval, out, "--images", "2") == 0
    kept = (out / "00000" / "samples" / "0000.png").stat().st_mtime_ns
    whole = pixels(out / "00001" / "samples" / "0001.png")
    (out / "00001" / "samples" / "0001.png").unlink()  # as if interrupted while writing prompt 1
    (out / "00002" / "metadata.jsonl").unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert generate(geneval, out, "--images", "2", "--resume") == 0
    assert "4 image(s) of 2 prompt(s) written in" in caplog.text and "1 prompt(s) already complete kept" in caplog.text
    assert (out / "00000" / "samples" / "0000.png").stat().st_mtime_ns == kept
    assert np.array_equal(pixels(out / "00001" / "samples" / "0001.png"), whole)
    caplog.clear()
    assert generate(geneval, out, "--images", "2", "--steps", "2", "--resume") == 3
    assert "0000.png was generated with other settings (steps 1, here 2); resume with the same settings" in caplog.text
    assert generate(geneval, out, "--images", "3", "--resume") == 3  # 00000 would get a third image
    assert "00000/samples/0000.png was generated with other settings (seeds [0, 1], here [0, 1, 2])" in caplog.text
    assert generate(dpg, tmp_path / "dpg", "--images", "1") == 0
    (dpg / "item_c.txt").write_text("a green frog")
    with caplog.at_level(logging.INFO):
        assert generate(dpg, tmp_path / "dpg", "--images", "1", "--resume") == 0
    assert "1 image(s) of 1 prompt(s) written in" in caplog.text and "2 prompt(s) already complete kept" in caplog.text
    (dpg / "item_a.txt").unlink()
    assert generate(dpg, tmp_path / "dpg", "--images", "1", "--resume") == 3
    assert "holds images of prompts that" in caplog.text and "does not have (item_a)" in caplog.text
