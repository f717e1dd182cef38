"""``apexgen train-teacher`` and ``apexgen distill``: the teacher by flow matching on Fashion-MNIST with
train prompts, and a student distilled from it by any method, with previews, checkpoints and resume
(``apexgen.train.job``). A folder that holds a run is refused unless it is resumed or overwritten
(``apexgen.train.run_folder``); the summary (teacher.json, run.json) records the totals over every segment
of a resumed run."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from apexgen.config import to_dict
from apexgen.export import TRANSFORMER_FOLDER, export_full, export_lora
from apexgen.jobs.pixel.config import T2IConfig
from apexgen.jobs.pixel.data import PixelData, open_data
from apexgen.jobs.pixel.generate import generate
from apexgen.jobs.pixel.images import save_grid
from apexgen.jobs.pixel.models import ModelFileError, image_shape, make_student, new_teacher, save_teacher
from apexgen.jobs.pixel.prompts import EvaluationPrompts
from apexgen.objectives import build_objective
from apexgen.seeding import OBJECTIVE_INIT, seeded_global_rng
from apexgen.text import text_encoder
from apexgen.train import job
from apexgen.train.loop import Trainer, TrainResult
from apexgen.train.run_folder import EXPORT_FOLDER, SUMMARY_FILE, check_run_folder

log = logging.getLogger(__name__)

PREVIEW_TEACHER_STEPS = 20


def preview_grid(model, sampler: str, nfe: int, prompts: EvaluationPrompts, config: T2IConfig, path: Path) -> Path:
    """A class × seed grid: rows are the classes (first held-out prompt each), columns the seeds."""
    seeds = config.eval.grid_seeds
    rows = prompts.grid_rows().repeat_interleave(seeds)
    was_training = model.training
    model.eval()
    images = generate(
        model,
        sampler,
        nfe,
        prompts.embeddings,
        rows,
        prompts.null,
        config.eval.guidance,
        config.eval.seed,
        batch_size=len(rows),
    ).images
    model.train(was_training)
    return save_grid(images, seeds, path)


def check_fits(model, data: PixelData, what: str) -> None:
    """A model draws images of one shape: refuse data of another before any training or scoring."""
    if image_shape(model) != data.image_shape:
        raise ModelFileError(
            f"{what} draws {'×'.join(map(str, image_shape(model)))} images, {data.title} holds "
            f"{'×'.join(map(str, data.image_shape))}: pass a teacher trained on this data (`apexgen train-teacher` "
            "with the same data settings)"
        )


def train_teacher(config: T2IConfig, out: Path, resume: bool = False, overwrite: bool = False) -> TrainResult:
    started = time.perf_counter()
    check_run_folder(out, resume, overwrite)
    encoder, data = text_encoder(config.text), open_data(config.data)
    teacher = new_teacher(config.model, data.image_shape, config.teacher.seed)
    objective = build_objective("flow_matching", config.methods, teacher, None)
    stream = data.stream(encoder, config.teacher.batch_size, config.teacher.seed)
    prompts = data.prompts(encoder)
    trainer = Trainer(objective, stream, config.teacher, out_dir=out, description="teacher", steps_key="teacher.steps")

    def preview(step: int) -> None:
        with job.ema_weights(trainer):
            path = preview_grid(
                teacher, "teacher", PREVIEW_TEACHER_STEPS, prompts, config, out / "previews" / f"step_{step:06d}.png"
            )
        log.info("preview: %s", path)

    trainer.preview = preview
    job.begin(trainer, resume, overwrite)
    log.info(
        "teacher: %d parameters, %d steps of batch %d",
        sum(p.numel() for p in teacher.parameters()),
        config.teacher.steps,
        config.teacher.batch_size,
    )
    result = trainer.run()
    with job.ema_weights(trainer):
        save_teacher(
            teacher,
            out,
            {
                "config": to_dict(config),
                "result": dataclasses.asdict(result) | {"history": []},
                "final": result.history[-1] if result.history else {},
            },
        )
        preview(config.teacher.steps)
    log.info(
        "done in %.0f s: the teacher in %s (weights in %s, previews in %s)",
        time.perf_counter() - started,
        out,
        out / TRANSFORMER_FOLDER,
        out / "previews",
    )
    return result


def distill(
    config: T2IConfig, teacher_dir: Path, out: Path, resume: bool = False, overwrite: bool = False
) -> TrainResult:
    """Distil ``config.distill.method`` from the teacher in ``teacher_dir``; the export lands in out/export
    and the summary in out/run.json."""
    started = time.perf_counter()
    check_run_folder(out, resume, overwrite)
    settings = config.distill
    encoder, data = text_encoder(config.text), open_data(config.data)
    networks = make_student(teacher_dir, settings, config.methods)
    check_fits(networks.student, data, f"the teacher in {teacher_dir}")
    with seeded_global_rng(OBJECTIVE_INIT.seed(settings.train.seed)):  # e.g. DMD2's discriminator head
        objective = build_objective(settings.method, config.methods, networks.student, networks.teacher, networks.fake)
    stream = data.stream(encoder, settings.train.batch_size, settings.train.seed)
    prompts = data.prompts(encoder)
    steps_key = "distill.train.steps"
    trainer = Trainer(objective, stream, settings.train, out_dir=out, description=settings.method, steps_key=steps_key)

    def preview(step: int) -> None:
        path = preview_grid(networks.student, "student", 1, prompts, config, out / "previews" / f"step_{step:06d}.png")
        log.info("preview (one step): %s", path)

    trainer.preview = preview
    job.begin(trainer, resume, overwrite)
    trainable = sum(p.numel() for p in networks.student.parameters() if p.requires_grad)
    log.info(
        "%s: %s, %d trainable parameters, %d steps of batch %d",
        settings.method,
        "full fine-tuning" if settings.full_finetune else f"LoRA rank {settings.lora.rank}",
        trainable,
        settings.train.steps,
        settings.train.batch_size,
    )
    result = trainer.run()
    networks.student.eval()
    export = export_full if settings.full_finetune else export_lora
    details = {"method": settings.method, "teacher": str(teacher_dir), "config": to_dict(config)}
    exported = job.finish(trainer, result, lambda: export(networks.student, out / EXPORT_FOLDER), details)
    log.info(
        "done in %.0f s: %s student in %s (export in %s, summary %s, previews in %s)",
        time.perf_counter() - started,
        settings.method,
        out,
        exported.directory,
        out / SUMMARY_FILE,
        out / "previews",
    )
    return result
