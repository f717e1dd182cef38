"""Reruns, interruptions and resumed runs of the main job's commands, on tiny runs: a folder that holds a
run is refused and left byte-identical; SIGTERM mid-distillation leaves a checkpoint at the step reached
and ``--resume`` ends with the weights of an uninterrupted run and the totals of both segments; a resume
past the run's steps is refused; two students of one method keep two rows in ``apexgen eval``."""

import hashlib
import json
import logging
import shutil
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from apexgen.cli import main
from apexgen.export import LORA_WEIGHTS
from apexgen.jobs.pixel.data import open_data
from apexgen.jobs.pixel.evaluate import weights_fingerprint
from apexgen.jobs.pixel.prompts import evaluation_prompts
from apexgen.text import text_encoder
from apexgen.train.loop import Trainer
from tests.jobs.pixel.test_end_to_end import tiny

SHORT = ["teacher.steps=2", "teacher.checkpoint_every=2", "distill.train.steps=2", "distill.train.checkpoint_every=2"]


def fingerprint(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, by relative path."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def same_export(first: Path, second: Path) -> bool:
    """Whether the LoRA weights exported in two run folders are equal tensor for tensor."""
    one, other = (load_file(run_dir / "export" / LORA_WEIGHTS) for run_dir in (first, second))
    return one.keys() == other.keys() and all(torch.equal(one[k], other[k]) for k in one)


def distill(root: Path, out: Path, settings: list[str], *extra: str) -> int:
    return main(["distill", "--teacher", str(root / "teacher"), "--out", str(out), *settings, *extra])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished 2-step teacher (root/teacher) and a finished 2-step APEX student (root/apex)."""
    root = tmp_path_factory.mktemp("reruns")
    settings = [*tiny(root), *SHORT]
    assert main(["train-teacher", "--out", str(root / "teacher"), *settings]) == 0
    assert distill(root, root / "apex", settings) == 0
    return root, settings


def errors(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


def test_finished_runs_are_refused_and_left_byte_identical(run, caplog):
    root, settings = run
    for out, command, summary in [
        (root / "teacher", ["train-teacher", "--out", str(root / "teacher")], "teacher.json"),
        (root / "apex", ["distill", "--teacher", str(root / "teacher"), "--out", str(root / "apex")], "run.json"),
    ]:
        before = fingerprint(out)
        caplog.clear()
        assert main([*command, *settings]) == 3
        assert fingerprint(out) == before
        [message] = errors(caplog)
        assert message.startswith(f"{out} already holds a run ({summary}, checkpoints/ up to step_0000002")
        assert "pass --resume to continue it or --overwrite to replace it" in message and "\n" not in message


def test_overwrite_replaces_the_run_and_its_old_checkpoints(run, tmp_path):
    root, settings = run
    out = tmp_path / "again"
    shutil.copytree(root / "apex", out)
    shutil.copytree(out / "checkpoints" / "step_0000002", out / "checkpoints" / "step_0000099")  # of another run
    assert distill(root, out, settings, "--overwrite") == 0
    assert sorted(path.name for path in (out / "checkpoints").iterdir()) == ["step_0000002"]
    assert same_export(out, root / "apex")  # the same settings and seed: the same run again


def test_sigterm_mid_run_keeps_the_step_reached_and_resume_ends_as_the_uninterrupted_run(
    run, tmp_path, monkeypatch, caplog, capsys
):
    root, settings = run
    out = tmp_path / "stopped"
    original = Trainer.step

    def step_then_sigterm(trainer, step):
        values = original(trainer, step)
        if step == 0:
            signal.raise_signal(signal.SIGTERM)
        return values

    monkeypatch.setattr(Trainer, "step", step_then_sigterm)
    assert distill(root, out, settings) == 143
    monkeypatch.undo()
    [message] = [record.getMessage() for record in caplog.records if "stopped by" in record.getMessage()]
    assert message == (
        f"training stopped by SIGTERM after step 1: checkpoint saved in {out / 'checkpoints' / 'step_0000001'}; "
        "rerun the same command with --resume to continue"
    )
    assert "Traceback" not in caplog.text + "".join(capsys.readouterr())
    assert sorted(path.name for path in (out / "checkpoints").iterdir()) == ["step_0000001"]
    assert not (out / "run.json").exists() and not (out / "export").exists()
    first = json.loads((out / "checkpoints" / "step_0000001" / "trainer.json").read_text())["train_seconds"]
    assert first > 0

    assert distill(root, out, settings, "--resume") == 0
    assert same_export(out, root / "apex")
    summary = json.loads((out / "run.json").read_text())
    assert summary["steps"] == 2 and summary["last_segment"]["steps"] == 1
    assert summary["train_seconds"] == pytest.approx(first + summary["last_segment"]["seconds"])


def test_resume_with_fewer_steps_than_the_checkpoint_is_refused(run, caplog):
    root, settings = run
    before = fingerprint(root / "apex")
    assert distill(root, root / "apex", [*settings, "distill.train.steps=1"], "--resume") == 2
    [message] = errors(caplog)
    assert "is at step 2, past this run's 1 steps; set distill.train.steps=2 or more to continue it" in message
    assert fingerprint(root / "apex") == before


class LabelledScorer:
    """Stands in for the FID and classifier scorer: a row names its candidate's label and weights."""

    def __init__(self, config):
        self.config, self.prompts = config, evaluation_prompts(text_encoder(config.text))
        self.classifier = SimpleNamespace(report=SimpleNamespace(test_accuracy=1.0))
        self.data, self.reference, self.near_duplicate_distance = open_data(config.data), SimpleNamespace(count=1), 6.0

    def score(self, candidate, nfe: int) -> dict:
        measures = ("fid", "accuracy", "diversity", "pixel_diversity", "near_duplicates", "seconds_per_image")
        return {
            "method": candidate.method,
            "nfe": nfe,
            "weights": weights_fingerprint(candidate.network),
            **dict.fromkeys(measures, 1.0),
            "train_seconds": candidate.train_seconds,
            "peak_memory_mb": candidate.peak_memory_mb,
        }


def test_two_students_of_one_method_keep_two_rows_named_by_their_folders(run, tmp_path, monkeypatch, caplog):
    root, settings = run
    other = tmp_path / "seed1"
    with caplog.at_level(logging.INFO):
        assert distill(root, other, [*settings, "distill.train.seed=1"], "--resume") == 0
    assert f"no checkpoint in {other / 'checkpoints'}: starting from step 0" in caplog.text
    monkeypatch.setattr("apexgen.jobs.pixel.evaluate.scorer", LabelledScorer)
    out = tmp_path / "eval"
    students = ["--students", str(root / "apex"), str(other)]
    assert main(["eval", "--teacher", str(root / "teacher"), *students, "--out", str(out), *settings]) == 0
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert [(row["method"], row["nfe"]) for row in rows] == [("teacher", 1), ("teacher", 2), ("apex", 1), ("seed1", 1)]
    assert rows[2]["weights"] != rows[3]["weights"]  # two students, not one twice
    assert sorted(path.name for path in (out / "rows").iterdir()) == ["apex_nfe1.json", "seed1_nfe1.json"] + [
        "teacher_nfe1.json",
        "teacher_nfe2.json",
    ]
    assert (out / "grid_apex_nfe1.png").is_file() and (out / "grid_seed1_nfe1.png").is_file()
    report = (out / "report.md").read_text()
    assert "| apex | 1 |" in report and "| seed1 | 1 |" in report


def test_students_whose_names_would_clash_are_refused(tmp_path, caplog):
    for parent in ("a", "b"):
        (tmp_path / parent / "run").mkdir(parents=True)
        (tmp_path / parent / "run" / "run.json").write_text(json.dumps({"method": "apex"}))
        (tmp_path / parent / "run" / "history.json").write_text("[]")  # a finished run has its curves
    students = [str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run")]
    command = ["eval", "--teacher", str(tmp_path / "teacher"), "--students", *students]
    assert main([*command, "--out", str(tmp_path / "eval")]) == 2
    [message] = errors(caplog)
    assert "more than one row would be named 'run'" in message and not (tmp_path / "eval").exists()


def test_the_demo_runs_again_in_its_own_folder(run, tmp_path, monkeypatch, caplog):
    """The demo resumes its own distillation: a second run reuses the finished student instead of refusing."""
    root, settings = run
    monkeypatch.setattr("apexgen.jobs.pixel.evaluate.scorer", LabelledScorer)
    command = ["demo", "--teacher", str(root / "teacher"), "--out", str(tmp_path / "demo"), *settings]
    assert main(command) == 0
    first = json.loads((tmp_path / "demo" / "apex" / "run.json").read_text())
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main(command) == 0
    assert "resumed from" in caplog.text and "step 2 of 2" in caplog.text
    again = json.loads((tmp_path / "demo" / "apex" / "run.json").read_text())
    assert again["steps"] == 2 and again["train_seconds"] == pytest.approx(first["train_seconds"], abs=0.05)
    assert again["last_segment"]["steps"] == 0
