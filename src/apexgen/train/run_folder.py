"""A run's output folder. Every command that writes one (``train-teacher``, ``distill``, ``train``) follows
one rule: a folder that already holds a run is continued (``--resume``) or replaced (``--overwrite``), never
written over silently. The check comes before any work, so a refused folder is left as it was; with
``--overwrite`` the previous run's files are removed only once the new run's inputs have been read."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from apexgen.train import checkpoint

log = logging.getLogger(__name__)

SUMMARY_FILE = "run.json"  # the summary a finished student run writes (``apexgen.train.job.finish``)
TEACHER_SUMMARY_FILE = "teacher.json"  # beside the teacher's weights, at the end of ``train-teacher``
LEGACY_SUMMARY_FILE = "distill.json"  # what ``distill`` wrote before run.json: such folders stay protected
SUMMARY_FILES = (SUMMARY_FILE, TEACHER_SUMMARY_FILE, LEGACY_SUMMARY_FILE)
CHECKPOINT_FOLDER = "checkpoints"
EXPORT_FOLDER = "export"  # the student for the stock pipeline (or the pixel-space job's loader)
# What a run writes besides its summary and checkpoints: removed by --overwrite (and nothing else is).
RUN_OUTPUTS = (
    EXPORT_FOLDER,
    "transformer",  # the teacher's weights
    "previews",
    "tensorboard",
    "history.json",
    "ledger.jsonl",
    "ledger_summary.json",
    "config.yaml",
)
# Besides the summaries and checkpoints, what shows that a run was written here.
RUN_WEIGHTS = (EXPORT_FOLDER, "transformer")


class RunFolderError(RuntimeError):
    """The output folder holds a run and neither --resume nor --overwrite was given."""


def existing_run(out: Path) -> list[str]:
    """What in ``out`` shows that a run was written there (empty when nothing does)."""
    found = [name for name in SUMMARY_FILES if (out / name).is_file()]
    newest = checkpoint.latest(out / CHECKPOINT_FOLDER)
    if newest is not None:
        found.append(f"{CHECKPOINT_FOLDER}/ up to {newest.name}")
    found += [f"{name}/" for name in RUN_WEIGHTS if (out / name).is_dir()]
    return found


def check_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse ``out`` if it holds a run, unless the run is to be continued or replaced."""
    found = existing_run(out)
    if found and not (resume or overwrite):
        raise RunFolderError(
            f"{out} already holds a run ({', '.join(found)}); pass --resume to continue it or --overwrite to "
            "replace it (or choose another output folder)"
        )


def remove_previous_run(out: Path) -> None:
    """Delete what an earlier run wrote in ``out`` (its summary, checkpoints and outputs; nothing else)."""
    removed = []
    for name in (*SUMMARY_FILES, CHECKPOINT_FOLDER, *RUN_OUTPUTS):
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    if removed:
        log.info("--overwrite: removed the previous run's %s from %s", ", ".join(removed), out)
