"""SIGTERM and SIGINT during training: the step is finished, a checkpoint is written at the step reached, the
trainer raises TrainingInterrupted (exit code 143 / 130) and the previous handlers come back; a resumed run
ends exactly where an uninterrupted one does. The signals are real: sent to this process from a preview."""

import dataclasses
import signal

import pytest
import torch

from apexgen.train import checkpoint
from apexgen.train.interrupt import TrainingInterrupted, stop_requests
from tests.train.test_loop import CONFIG, make_trainer

# 6 steps with a checkpoint every 4: a stop after step 2 is between the periodic checkpoints.
UNALIGNED = dataclasses.replace(CONFIG, checkpoint_every=4)


class PreviousHandler(Exception):
    """Raised by the handler installed before the trainer's, to show that it is called again."""


def signal_at(trainer, done: int, signal_number: int, times: int = 1) -> None:
    """Send ``signal_number`` to this process ``times`` times from the preview after step ``done``."""

    def preview(step: int) -> None:
        if step == done:
            for _ in range(times):
                signal.raise_signal(signal_number)

    trainer.preview = preview
    trainer.config = dataclasses.replace(trainer.config, preview_every=1)


@pytest.mark.parametrize("signal_number, exit_code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_after_the_step_with_a_checkpoint_there_and_resume_is_exact(tmp_path, signal_number, exit_code):
    full, full_student = make_trainer("apex", tmp_path / "full", UNALIGNED)
    full.run()

    stopped, _ = make_trainer("apex", tmp_path / "stopped", UNALIGNED)
    signal_at(stopped, 2, signal_number)
    before = signal.getsignal(signal_number)
    with pytest.raises(TrainingInterrupted) as interrupted:
        stopped.run()
    assert signal.getsignal(signal_number) is before
    assert (interrupted.value.step, interrupted.value.exit_code) == (2, exit_code)
    newest = checkpoint.latest(tmp_path / "stopped" / "checkpoints")
    assert newest.name == "step_0000002" and interrupted.value.checkpoint == newest
    assert "rerun the same command with --resume" in str(interrupted.value)
    assert [entry["step"] for entry in stopped.history] == [1, 2]

    resumed, resumed_student = make_trainer("apex", tmp_path / "stopped", UNALIGNED)
    assert resumed.resume() and resumed.start_step == 2
    resumed.run()
    for a, b in zip(full_student.parameters(), resumed_student.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_stop_at_a_periodic_checkpoint_writes_it_once(tmp_path, monkeypatch):
    trainer, _ = make_trainer("apex", tmp_path, UNALIGNED)
    signal_at(trainer, 4, signal.SIGTERM)
    saved = []
    original = checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda *args: saved.append(args[4].step) or original(*args))
    with pytest.raises(TrainingInterrupted, match="after step 4"):
        trainer.run()
    assert saved == [4]


def test_without_an_output_folder_nothing_is_saved_and_the_message_says_so(tmp_path):
    trainer, _ = make_trainer("apex", None, UNALIGNED)
    signal_at(trainer, 1, signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match="nothing was saved") as interrupted:
        trainer.run()
    assert interrupted.value.checkpoint is None and interrupted.value.step == 1


def test_a_second_signal_stops_at_once_through_the_previous_handler(tmp_path):
    def previous(signal_number, frame):
        raise PreviousHandler

    original = signal.signal(signal.SIGINT, previous)
    try:
        trainer, _ = make_trainer("apex", tmp_path, UNALIGNED)
        signal_at(trainer, 2, signal.SIGINT, times=2)
        with pytest.raises(PreviousHandler):
            trainer.run()
        assert signal.getsignal(signal.SIGINT) is previous
        assert checkpoint.latest(tmp_path / "checkpoints") is None  # stopped at once: no checkpoint
    finally:
        signal.signal(signal.SIGINT, original)


def test_handlers_are_restored_and_a_request_is_only_noted():
    before = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    with stop_requests() as request:
        assert request.signal_number is None
        signal.raise_signal(signal.SIGTERM)
        assert request.signal_number == signal.SIGTERM
    assert {number: signal.getsignal(number) for number in before} == before
