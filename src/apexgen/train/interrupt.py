"""Stopping a run cleanly on SIGTERM (what SLURM and Kubernetes send before they kill a job) and SIGINT
(Ctrl-C): the handlers only note the request; the trainer finishes its step, writes a checkpoint at the
step reached and raises :class:`TrainingInterrupted`, which the command line turns into one line and exit
code 128 + the signal's number (143 for SIGTERM, 130 for SIGINT). A second signal stops at once, as
without these handlers."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RESUME_FLAG = "--resume"


class TrainingInterrupted(Exception):
    """Training stopped at ``step`` on ``signal_number``; ``checkpoint`` is where it was saved (None when the
    trainer has no output folder)."""

    def __init__(self, step: int, signal_number: int, checkpoint: Path | None):
        self.step, self.signal_number, self.checkpoint = step, signal_number, checkpoint
        name = signal.Signals(signal_number).name
        if checkpoint is None:
            advice = "nothing was saved (the run has no output folder)"
        else:
            advice = f"checkpoint saved in {checkpoint}; rerun the same command with {RESUME_FLAG} to continue"
        super().__init__(f"training stopped by {name} after step {step}: {advice}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signal_number


class StopRequest:
    """The first stop signal received while installed (``signal_number``, None until then)."""

    def __init__(self):
        self.signal_number: int | None = None
        self.previous: dict[int, object] = {}  # None: a handler not set from Python (restored as the default)

    def handle(self, signal_number: int, frame) -> None:
        if self.signal_number is not None:  # the second: stop at once, as the previous handler would
            self.restore()
            signal.raise_signal(signal_number)
            return
        self.signal_number = signal_number
        log.warning(
            "%s received: stopping after this step and saving a checkpoint (send it again to stop at once)",
            signal.Signals(signal_number).name,
        )

    def install(self) -> None:
        self.previous = {number: signal.signal(number, self.handle) for number in STOP_SIGNALS}

    def restore(self) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        self.previous = {}


@contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """Note SIGTERM and SIGINT instead of dying while the block runs; the previous handlers come back after.
    Outside the main thread (where Python allows no handlers) nothing is installed and no request comes."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    request.install()
    try:
        yield request
    finally:
        request.restore()
