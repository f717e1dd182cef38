"""What every training command does around its :class:`Trainer` (``distill``, ``train``; ``train-teacher``
uses the first two): the run's folder made ready once the inputs are read (:func:`begin`), the student's EMA
weights in place for what is written at the end (:func:`ema_weights`), and the end itself (:func:`finish`):
the export and a last preview under EMA, then one summary, ``run.json``, with the same fields for every
job plus the job's own ``details``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator

from apexgen.export import ExportResult
from apexgen.train.loop import Trainer, TrainResult
from apexgen.train.run_folder import SUMMARY_FILE, remove_previous_run


def begin(trainer: Trainer, resume: bool, overwrite: bool) -> None:
    """The run's folder made ready: the newest checkpoint resumed (checked against the settings before
    anything is written), or with ``overwrite`` the previous run removed; the main process writes."""
    if resume:
        trainer.resume()
    if trainer.distributed.is_main:
        if overwrite:
            remove_previous_run(trainer.out_dir)
        trainer.out_dir.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def ema_weights(trainer: Trainer) -> Iterator[None]:
    """The student's EMA weights in place for the block (its trained weights where no EMA is kept)."""
    with trainer.ema.applied() if trainer.ema else contextlib.nullcontext():
        yield


def finish(
    trainer: Trainer, result: TrainResult, export: Callable[[], ExportResult | None], details: dict
) -> ExportResult | None:
    """Export the student under EMA (``export`` returns None on processes that do not write) and a last
    preview, then write the summary. Every process takes part (a sharded student is gathered, a sharded
    forward needs them all); the one that exported writes the summary and gets the export back."""
    with ema_weights(trainer):
        exported = export()
        if trainer.preview is not None:
            trainer.preview(trainer.config.steps)
    if exported is None:
        return None
    summary = run_summary(trainer, result, exported, details)
    (trainer.out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    return exported


def run_summary(trainer: Trainer, result: TrainResult, exported: ExportResult, details: dict) -> dict:
    """The totals over every segment of the run (a resumed run is one more), the last segment's, and where
    the export is; ``details`` (the method, the teacher or backbone, the settings) first."""
    return {
        **details,
        "steps": result.steps,
        "train_seconds": result.seconds,
        "last_segment": {"steps": result.segment_steps, "seconds": result.segment_seconds},
        "peak_memory_mb": result.peak_memory_mb,
        "memory_method": result.memory_method,
        "trainable_parameters": result.trainable_parameters,
        "held_parameters": trainer.objective.held_parameters(),
        "ledger": trainer.ledger.summary(),
        "export": str(exported.directory),
    }
