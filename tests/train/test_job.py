"""The steps every training command shares: the folder made ready, the export and last preview under the
EMA weights, and one summary with the same fields for every job."""

import dataclasses
import json
from pathlib import Path

import torch

from apexgen.export import ExportResult
from apexgen.train import job
from apexgen.train.run_folder import SUMMARY_FILE
from tests.train.test_loop import CONFIG, make_trainer

EMA_CONFIG = dataclasses.replace(CONFIG, steps=2, checkpoint_every=2, ema_decay=0.5)


def test_finish_exports_and_previews_under_ema_then_writes_the_summary(tmp_path):
    trainer, student = make_trainer("regression", tmp_path / "run", EMA_CONFIG)
    job.begin(trainer, resume=False, overwrite=False)
    result = trainer.run()
    trained = [p.detach().clone() for p in student.parameters()]
    seen = {}

    def export() -> ExportResult:
        seen["export"] = [p.detach().clone() for p in student.parameters()]
        folder = tmp_path / "run" / "export"
        return ExportResult(folder, folder / "pytorch_lora_weights.safetensors", folder / "apexgen_sampling.json")

    trainer.preview = lambda step: seen.setdefault("preview_step", step)
    exported = job.finish(trainer, result, export, {"method": "regression", "teacher": "t"})
    with job.ema_weights(trainer):
        averaged = [p.detach().clone() for p in student.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(seen["export"], averaged, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(averaged, trained, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(student.parameters(), trained, strict=True))  # put back
    assert seen["preview_step"] == 2 and exported.directory == tmp_path / "run" / "export"
    summary = json.loads((tmp_path / "run" / SUMMARY_FILE).read_text())
    assert list(summary)[:2] == ["method", "teacher"]
    assert summary["steps"] == 2 and summary["last_segment"]["steps"] == 2
    assert summary["export"] == str(tmp_path / "run" / "export")
    assert summary["held_parameters"] == trainer.objective.held_parameters()
    assert summary["trainable_parameters"] == result.trainable_parameters


def test_a_process_that_does_not_export_writes_no_summary(tmp_path):
    trainer, _ = make_trainer("regression", tmp_path / "run", EMA_CONFIG)
    job.begin(trainer, resume=False, overwrite=False)
    assert job.finish(trainer, trainer.run(), lambda: None, {"method": "regression"}) is None
    assert not (tmp_path / "run" / SUMMARY_FILE).exists()


def test_begin_with_overwrite_removes_the_previous_run_and_keeps_the_rest(tmp_path):
    out: Path = tmp_path / "run"
    (out / "export").mkdir(parents=True)
    (out / SUMMARY_FILE).write_text("{}")
    (out / "notes.txt").write_text("mine")
    trainer, _ = make_trainer("regression", out, EMA_CONFIG)
    job.begin(trainer, resume=False, overwrite=True)
    assert sorted(path.name for path in out.iterdir()) == ["notes.txt"]
