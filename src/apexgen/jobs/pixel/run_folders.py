"""The run folders ``apexgen eval --students`` reads: a finished ``apexgen distill`` run (its run.json,
history.json and export/). Anything else (an export folder, an interrupted run, a folder of another kind)
is refused before any model is loaded, with what the folder is and what to pass instead; and the name of
each student's rows."""

from __future__ import annotations

import json
from pathlib import Path

from apexgen.config import ConfigError
from apexgen.export import SETTINGS_FILE
from apexgen.jobs.pixel.models import ModelFileError
from apexgen.train import checkpoint
from apexgen.train.run_folder import LEGACY_SUMMARY_FILE, SUMMARY_FILE

HISTORY = "history.json"


def read_student_run(run: Path) -> dict:
    """The run.json of the finished run ``run``; a ModelFileError saying what the folder is otherwise."""
    summary, newest = run / SUMMARY_FILE, checkpoint.latest(run / "checkpoints")
    if not run.is_dir():
        raise ModelFileError(f"--students {run}: no such folder; pass the --out folder of `apexgen distill`")
    if not summary.is_file():
        raise ModelFileError(f"--students {run}: {what_it_holds(run, newest)}")
    info, problem = None, None
    try:
        info = json.loads(summary.read_text(encoding="utf-8"))
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        problem = f"{type(error).__name__}: {error}"
    if problem is None and not (isinstance(info, dict) and "method" in info):
        problem = "it records no method"
    if problem is not None:
        again = f"`apexgen distill --out {run} --resume` (same settings) writes it again" if newest else "run it again"
        raise ModelFileError(f"{summary} is corrupt or truncated ({problem}); {again}")
    if not (run / HISTORY).is_file():
        raise ModelFileError(f"--students {run}: its {HISTORY} is missing (the training curves); restore it")
    return info


def what_it_holds(run: Path, newest: Path | None) -> str:
    """What a folder without run.json is, and what to pass instead."""
    if (run / LEGACY_SUMMARY_FILE).is_file():
        return (
            f"its summary is {LEGACY_SUMMARY_FILE}, the name before {SUMMARY_FILE}; rename it: "
            f"`mv {run / LEGACY_SUMMARY_FILE} {run / SUMMARY_FILE}`"
        )
    if (run / SETTINGS_FILE).is_file():
        parent = run.parent
        known = (parent / SUMMARY_FILE).is_file()
        instead = f"--students {parent}" if known else "the --out folder of `apexgen distill`"
        return f"this is an export folder ({SETTINGS_FILE}, no {SUMMARY_FILE}); pass the run that holds it: {instead}"
    if newest is not None:
        return (
            f"this run is unfinished (checkpoints up to {newest.name}, no {SUMMARY_FILE}): finish it with "
            f"`apexgen distill --out {run} --resume` and the same settings, then evaluate it"
        )
    return (
        f"no {SUMMARY_FILE}: this is not a folder written by `apexgen distill`; pass the --out folder of a finished run"
    )


def student_labels(students: list[Path]) -> list[str]:
    """Each student's name in the report: its method, or its folder's name where students share a method."""
    methods = [read_student_run(run)["method"] for run in students]
    labels = [run.name if methods.count(method) > 1 else method for run, method in zip(students, methods, strict=True)]
    for label in set(labels):
        if labels.count(label) > 1 or label == "teacher":
            clashing = [str(run) for run, other in zip(students, labels, strict=True) if other == label]
            raise ConfigError(
                "",
                f"--students {' '.join(clashing)}: more than one row would be named '{label}' (students of one "
                "method are named by their folders); give each a folder of its own name",
            )
    return labels
