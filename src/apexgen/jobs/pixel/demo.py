"""``apexgen demo``: the main job in one command. The teacher (shipped in the package, or trained first),
APEX distillation as a LoRA, evaluation of the teacher and the student on the held-out prompts, and the
report, with settings sized for about a quarter of an hour on 2 CPU cores (``config.DEMO``)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from apexgen.jobs.pixel.config import T2IConfig
from apexgen.jobs.pixel.evaluate import evaluate, student_candidate, teacher_candidate
from apexgen.jobs.pixel.report import write_report
from apexgen.jobs.pixel.train import distill, train_teacher

log = logging.getLogger(__name__)


def run_demo(config: T2IConfig, teacher_dir: Path | None, out: Path, command: str) -> Path:
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    if teacher_dir is None:
        teacher_dir = out / "teacher"
        log.info("no teacher ships with this installation: training one first (%d steps)", config.teacher.steps)
        train_teacher(config, teacher_dir, resume=True)
    log.info("distilling a one-step student with APEX (LoRA rank %d) from %s", config.distill.lora.rank, teacher_dir)
    distill(config, teacher_dir, out / config.distill.method, resume=True)
    log.info(
        "evaluating the teacher and the student on the held-out prompts (%d images per row)", config.eval.fid.samples
    )
    candidates = [
        teacher_candidate(teacher_dir, config),
        student_candidate(teacher_dir, out / config.distill.method, config),
    ]
    report = evaluate(candidates, config, out)
    report["wall_seconds"] = time.perf_counter() - started
    history = json.loads((out / config.distill.method / "history.json").read_text())
    path = write_report(report, {config.distill.method: history}, out, command)
    log.info("demo done in %.0f s: %s", report["wall_seconds"], path)
    return path
