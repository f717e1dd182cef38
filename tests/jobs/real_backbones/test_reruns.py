"""Reruns and interruptions of ``apexgen train`` on a tiny SD3 pipeline: a finished run without checkpoints
is refused and left byte-identical (``--overwrite`` replaces it); SIGTERM mid-run leaves a checkpoint at the
step reached and ``--resume`` ends with the export of an uninterrupted run and the totals of both segments;
a resume past the run's steps is refused and leaves the run as it was."""

import json
import logging
import signal

import torch
from safetensors.torch import load_file

from apexgen.cli import main
from apexgen.export import LORA_WEIGHTS
from apexgen.train.loop import Trainer
from tests.jobs.pixel.test_reruns import fingerprint
from tests.jobs.real_backbones.helpers import images, train_arguments

WITHOUT_CHECKPOINTS = ("train.checkpoint_every=0", "train.preview_every=0")


def test_a_finished_run_without_checkpoints_is_refused_left_byte_identical_and_can_be_overwritten(
    tmp_path, models, caplog
):
    out = tmp_path / "run"
    arguments = train_arguments("sd3", models("sd3"), images(tmp_path / "data"), out, *WITHOUT_CHECKPOINTS)
    assert main(arguments) == 0
    before = fingerprint(out)
    assert main(arguments) == 3
    assert fingerprint(out) == before
    [message] = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert message.startswith(f"{out} already holds a run (run.json, export/); pass --resume")
    assert "--overwrite to replace it" in message
    assert main([*arguments, "--overwrite"]) == 0
    assert json.loads((out / "run.json").read_text())["steps"] == 2


def test_sigterm_mid_run_then_resume_ends_as_the_uninterrupted_run(tmp_path, models, monkeypatch, caplog):
    data, model = images(tmp_path / "data"), models("sd3")
    assert main(train_arguments("sd3", model, data, tmp_path / "whole")) == 0  # checkpoints at every step
    out = tmp_path / "parts"
    arguments = train_arguments("sd3", model, data, out, *WITHOUT_CHECKPOINTS)
    original = Trainer.step

    def step_then_sigterm(trainer, step):
        values = original(trainer, step)
        if step == 0:
            signal.raise_signal(signal.SIGTERM)
        return values

    monkeypatch.setattr(Trainer, "step", step_then_sigterm)
    assert main(arguments) == 143
    monkeypatch.undo()
    assert "training stopped by SIGTERM after step 1" in caplog.text and "with --resume to continue" in caplog.text
    assert sorted(path.name for path in (out / "checkpoints").iterdir()) == ["step_0000001"]
    first = json.loads((out / "checkpoints" / "step_0000001" / "trainer.json").read_text())["train_seconds"]

    assert main([*arguments, "--resume"]) == 0
    whole, parts = (load_file(tmp_path / run / "export" / LORA_WEIGHTS) for run in ("whole", "parts"))
    assert whole.keys() == parts.keys() and all(torch.equal(whole[k], parts[k]) for k in whole)
    summary = json.loads((out / "run.json").read_text())
    assert summary["steps"] == 2 and summary["last_segment"]["steps"] == 1
    assert summary["train_seconds"] > summary["last_segment"]["seconds"] > 0
    assert abs(summary["train_seconds"] - first - summary["last_segment"]["seconds"]) < 1e-6

    caplog.clear()  # the uninterrupted run kept a checkpoint at each of its 2 steps
    shorter = [*train_arguments("sd3", model, data, tmp_path / "whole", "train.steps=1"), "--resume"]
    before = fingerprint(tmp_path / "whole")
    assert main(shorter) == 2
    assert "is at step 2, past this run's 1 steps; set train.steps=2 or more to continue it" in caplog.text
    assert fingerprint(tmp_path / "whole") == before
